"""Twenty varied prompts for greedy comparisons with llama.cpp."""

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    ",
    "Here is a list of the planets in our solar system:\n1.",
    "The three primary colors are",
    "Q: What is 12 times 12?\nA:",
    "import numpy as np\n\n# compute the mean of an array\n",
    "The most important thing about learning a new language is",
    "In 1969, the first humans landed on",
    "Dear hiring manager,\n\nI am writing to apply for",
    "Water boils at a temperature of",
    "A recipe for pancakes:\nIngredients:\n-",
    "The quick brown fox",
    "SELECT name, age FROM users WHERE",
    "The theory of relativity was developed by",
    "Photosynthesis is the process by which",
    "To be, or not to be, that is",
    "My favourite programming language is Python because",
    "The best way to stay healthy is to",
    "Translate to French: 'Good morning, how are you?'\nFrench:",
]
