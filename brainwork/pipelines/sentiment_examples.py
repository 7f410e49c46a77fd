"""Hand-written examples that define POSITIVE and NEGATIVE for the offline sentiment default.

Written for this project (not drawn from any labelled corpus): short, everyday statements about
products, services, experiences and feelings.
"""

POSITIVE = [
    "I love this!",
    "This is wonderful, I'm so happy with it.",
    "Absolutely fantastic service, thank you so much!",
    "Best purchase I've made all year.",
    "The staff were friendly and helpful.",
    "Great quality and fast delivery, highly recommend.",
    "I really enjoyed it, what a great experience.",
    "Thanks for the quick support, problem solved!",
    "This app makes my life so much easier.",
    "Amazing food and a lovely atmosphere.",
    "I'm impressed, it works perfectly.",
    "So excited about this, it's brilliant!",
    "Five stars, would buy again.",
    "Learning new things makes me happy.",
    "What a beautiful day, I feel great.",
    "The update is awesome, everything is faster now.",
    "Loving my new phone, the camera is superb.",
    "Exceeded my expectations in every way.",
    "Such a pleasant flight, the crew were great.",
    "Really good value for the money.",
]

NEGATIVE = [
    "I hate this.",
    "This is terrible, I'm so disappointed.",
    "Awful customer service, never again.",
    "Worst purchase I've ever made.",
    "The staff were rude and unhelpful.",
    "Poor quality and the delivery was late.",
    "I really did not enjoy it, what a waste of time.",
    "Still waiting for support to answer, this is ridiculous.",
    "This app keeps crashing and losing my data.",
    "The food was cold and the place was dirty.",
    "I'm annoyed, it stopped working after a day.",
    "So frustrated with this, it's broken again.",
    "One star, do not buy.",
    "My flight was delayed for hours and nobody told us anything.",
    "What a miserable day, I feel awful.",
    "The update ruined everything, now it's so slow.",
    "My new phone's battery dies by noon, very unhappy.",
    "Completely failed to meet my expectations.",
    "They charged me twice and refused a refund.",
    "Overpriced and not worth the money.",
]

# Few-shot turns for the chat-model default: tweet-like, written for this project (not drawn from
# any labelled corpus), with the hard cases the model should see once: sarcasm, negation, praise
# after a problem. Label 1 = the customer is happy.
TWEET_SHOTS = [
    ("Just got my refund in 2 days, no questions asked. That's how you keep customers @ShopRite", 1),
    ("@MetroCell no signal in my own kitchen for a week now. paying for what exactly??", 0),
    ("oh wonderful, my 'express' parcel is now 'delayed' for the 4th day in a row. thanks a lot", 0),
    ("Not gonna lie, the new update is actually not bad at all", 1),
    ("The barista remembered my order after one visit, small thing but made my morning", 1),
    ("Third time the app crashed mid-payment. Uninstalling.", 0),
    ("Flight was delayed but the crew handled it so well, free snacks and constant updates. Respect", 1),
    ("Still waiting on hold, 47 minutes and counting #customerservice", 0),
]
