"""Built-in DEMONSTRATION corpus: templated dialogues over the 32 EmpatheticDialogues emotions.

This is NOT EmpatheticDialogues. The real corpus cannot be shipped with the package, so ``data=builtin``
(and the quickstart) train on these small, hand-written templates instead. Each emotion has its own
vocabulary, so the emotion classifier has something to learn, but numbers obtained on it say nothing
about EmpDG on ED. The text imitates ED raw text (casing, contractions, punctuation, commas) and
:func:`write_builtin_csvs` writes it in the official CSV layout so the real loader path can be exercised.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from empdg.data.conversation import EMOTIONS, SPLITS, Conversation
from empdg.data.ed_csv import HEADER

#: Bump when the generated text changes, so preprocessing caches keyed on it are rebuilt.
BUILTIN_VERSION = 1

#: the official release's header line (the reader's :data:`empdg.data.ed_csv.HEADER`)
CSV_HEADER = ",".join(HEADER)
#: Made-up worker ids written to ``speaker_idx`` for the speaker and the listener.
SPEAKER_WORKER_ID, LISTENER_WORKER_ID = 1, 2

#: What a model trained on this corpus is, said once where its replies are read (chat start, training summary)
BUILTIN_MODEL_NOTICE = (
    "note: trained on the built-in demonstration corpus (templated dialogues, not EmpatheticDialogues): "
    "its replies are templates chosen by emotion words, e.g. 'I lost my job today' may get 'that is so "
    "great to hear'; train with data=empathetic_dialogues for real replies"
)


def builtin_model_notice(data_cfg: Mapping[str, Any] | None) -> str | None:
    """:data:`BUILTIN_MODEL_NOTICE` when a run's ``data`` config is the built-in corpus, else None."""
    return BUILTIN_MODEL_NOTICE if data_cfg and data_cfg.get("source") == "builtin" else None


class _Bank(NamedTuple):
    """Emotion-specific phrases: feeling words, past-tense events, listener questions, speaker follow-ups."""

    valence: str  # "pos", "neg" or "neu": selects the shared (non emotion-specific) phrases
    feel: tuple[str, ...]
    events: tuple[str, ...]
    questions: tuple[str, ...]
    followups: tuple[str, ...]


_BANKS: dict[str, _Bank] = {
    "afraid": _Bank("neg", ("afraid", "scared", "nervous"), (
        "I heard footsteps behind me walking home alone at night",
        "the power went out during a huge storm",
        "my car started sliding on the icy road",
        "a big dog, growling and barking, ran straight at me",
    ), (
        "Were you alone when it happened?", "Did anything bad happen in the end?",
        "Are you still scared about it?",
    ), (
        "Yes, I was completely alone, I kept looking over my shoulder.",
        "Luckily nothing happened, but I couldn't stop shaking.",
        "A little, I still don't like going out after dark.",
    )),
    "angry": _Bank("neg", ("angry", "mad", "upset"), (
        "someone keyed my car in the parking lot",
        "my roommate ate the food I'd saved for dinner, again",
        "a guy cut in front of me in a long line and laughed about it",
        "my coworker took credit for my project in front of the boss",
    ), (
        "Did you say something to them?", "Why do you think they did that?",
        "Have you calmed down since then?",
    ), (
        "I told them off, I was so mad I was shaking.",
        "I have no idea, it's just rude and I'm still angry.",
        "Not really, it still makes my blood boil.",
    )),
    "annoyed": _Bank("neg", ("annoyed", "irritated", "bothered"), (
        "my neighbor's dog kept barking all night long",
        "the guy next to me on the bus was chewing so loudly",
        "my phone kept freezing while I was trying to pay",
        "my brother kept texting me every five minutes about nothing",
    ), (
        "Does that happen a lot?", "Did you ask them to stop?", "How did you deal with it?",
    ), (
        "All the time, it's so irritating.",
        "I did, but it didn't help, it's really annoying.",
        "I just put my headphones on and tried to ignore it.",
    )),
    "anticipating": _Bank("neu", ("eager", "impatient", "restless"), (
        "I booked tickets for a concert next month",
        "my best friend said she's visiting in two weeks",
        "the new season of my favorite show comes out on Friday",
        "I found out the results come out next week",
    ), (
        "How long do you still have to wait?", "What are you looking forward to most?",
        "Have you made any plans for it?",
    ), (
        "Just a few more days, I'm counting down the hours.",
        "Honestly, I just can't wait to finally see it.",
        "Not yet, but I keep thinking about it every day.",
    )),
    "anxious": _Bank("neg", ("anxious", "stressed", "worried"), (
        "I had a job interview and couldn't sleep the night before",
        "my doctor called and asked me to come in for more tests",
        "I had to give a presentation in front of the whole company",
        "my rent was due and my paycheck was late",
    ), (
        "What are you most worried about?", "Have you been able to sleep at all?",
        "Is there anything that helps you relax?",
    ), (
        "I'm worried it'll go badly, I keep imagining the worst.",
        "Barely, my mind just won't stop racing.",
        "Deep breaths help a bit, but I'm still stressed.",
    )),
    "apprehensive": _Bank("neg", ("apprehensive", "uneasy", "hesitant"), (
        "I agreed to move to a new city for work",
        "my friend wanted me to try skydiving with her",
        "I signed up for a class where I don't know anyone",
        "I had to meet my girlfriend's parents for the first time",
    ), (
        "What makes you feel uneasy about it?", "Are you going to go through with it?",
        "Have you done anything like that before?",
    ), (
        "I'm not sure, it's just a big unknown and I'm hesitant.",
        "I think so, but I'm still a bit uneasy.",
        "Never, that's why I'm so unsure about it.",
    )),
    "ashamed": _Bank("neg", ("ashamed", "ashamed of myself", "humiliated"), (
        "I yelled at my mom over something stupid",
        "I lied to my friend about why I missed her party",
        "I failed a test I didn't even study for",
        "I got caught cheating in a board game with my kids",
    ), (
        "Did you apologize to them?", "Why do you think you did it?", "Do they know how you feel?",
    ), (
        "I did, but I still feel ashamed of myself.",
        "I don't know, I'm not proud of it at all.",
        "I haven't told them, I'm too ashamed to bring it up.",
    )),
    "caring": _Bank("pos", ("caring", "protective", "tender"), (
        "my little sister got sick and I stayed home to look after her",
        "I made soup for my neighbor, who just had surgery",
        "my dog hurt his paw and I carried him everywhere",
        "I took my grandma to all her doctor's appointments",
    ), (
        "How are they doing now?", "That's so kind, do you do that often?",
        "Did they appreciate the help?",
    ), (
        "Much better, I'm just glad I could take care of them.",
        "I try to, I like looking after the people I love.",
        "Yes, they thanked me so much, it was sweet.",
    )),
    "confident": _Bank("pos", ("confident", "sure of myself", "ready for anything"), (
        "I studied for weeks and walked into the exam",
        "I practiced my speech until I knew it by heart",
        "I finally nailed the routine I've been training for",
        "I went into the meeting knowing my numbers were solid",
    ), (
        "Do you think it went well?", "What helped you feel so sure?", "Have you gotten the results yet?",
    ), (
        "I think so, I knew every answer.",
        "All the practice, I knew I was ready.",
        "Not yet, but I'm confident it went great.",
    )),
    "content": _Bank("pos", ("content", "relaxed", "at peace"), (
        "I spent a quiet Sunday reading on the porch",
        "I finished all my chores and sat down with a cup of tea",
        "we had a simple dinner together, with no phones at the table",
        "I watched the sunset from the beach with my dog",
    ), (
        "That sounds peaceful, do you get days like that often?", "What made it feel so nice?",
        "Do you plan to do it again?",
    ), (
        "Not often, so I really enjoyed it.",
        "It was just calm, nothing to worry about.",
        "Definitely, I'm happy with the little things.",
    )),
    "devastated": _Bank("neg", ("devastated", "heartbroken", "crushed"), (
        "my grandfather passed away last week",
        "I lost my job right before the holidays",
        "my dog died after fourteen years with us",
        "my fiance called off our wedding",
    ), (
        "How are you holding up?", "Do you have people around to support you?",
        "Was it very sudden?",
    ), (
        "Not great, I cry every day.",
        "My family's been there, but it's still so hard.",
        "Completely, I'm still in shock and heartbroken.",
    )),
    "disappointed": _Bank("neg", ("disappointed", "let down", "bummed"), (
        "I didn't get the promotion I worked so hard for",
        "my favorite restaurant closed for good",
        "the concert I waited months for got cancelled",
        "my friends forgot my birthday",
    ), (
        "Did they tell you why?", "Is there a chance it'll happen again?", "What are you going to do now?",
    ), (
        "Not really, which makes it worse.",
        "Maybe, but I'm still pretty let down.",
        "I'm not sure, I'll just try to move on.",
    )),
    "disgusted": _Bank("neg", ("disgusted", "grossed out", "sick to my stomach"), (
        "I found a hair in my salad at a restaurant",
        "my roommate left dirty dishes in the sink for a week",
        "I saw a guy spit on the floor of the bus",
        "I opened the fridge and the milk had gone chunky",
    ), (
        "Did you say anything?", "Could you even finish eating after that?", "How did you clean it up?",
    ), (
        "I told the waiter, it was so gross.",
        "No way, I lost my appetite completely.",
        "With gloves and a lot of bleach, it was nasty.",
    )),
    "embarrassed": _Bank("neg", ("embarrassed", "mortified", "red in the face"), (
        "I tripped and fell in front of my whole class",
        "I waved back at someone who was waving at the person behind me",
        "I called my teacher mom by accident",
        "my stomach growled really loudly during a silent exam",
    ), (
        "Did anyone notice?", "How did you react?", "Do people still bring it up?",
    ), (
        "Everyone did, I turned bright red.",
        "I just laughed it off, but I wanted to disappear.",
        "Sometimes, and I'm still embarrassed every time.",
    )),
    "excited": _Bank("pos", ("excited", "thrilled", "pumped"), (
        "I got tickets to see my favorite band live",
        "we booked a trip to Japan for the summer",
        "I got accepted into my dream school",
        "my best friend told me she's getting married",
    ), (
        "When is it happening?", "What are you most excited about?", "Who are you going with?",
    ), (
        "In a few weeks, I can't wait!",
        "Everything, I'm so thrilled.",
        "With my best friend, it's going to be amazing.",
    )),
    "faithful": _Bank("pos", ("faithful", "loyal", "devoted"), (
        "I stayed with my team even when everyone else quit",
        "I kept visiting my friend in the hospital every single day",
        "I turned down a better offer because I'd promised my boss I'd stay",
        "I've been going to the same church every Sunday for years",
    ), (
        "That's loyal of you, was it hard?", "Why was it important to you?",
        "Do they know how much you care?",
    ), (
        "Sometimes, but I keep my promises.",
        "I believe in sticking with people, it's who I am.",
        "I think so, I'd never let them down.",
    )),
    "furious": _Bank("neg", ("furious", "livid", "enraged"), (
        "the mechanic charged me double and didn't even fix my car",
        "someone hit my parked car and drove off",
        "my landlord kept my whole deposit for no reason",
        "the airline lost my luggage and then hung up on me",
    ), (
        "Did you report it?", "Did you get your money back?", "What are you going to do about it?",
    ), (
        "I did, and I'm still livid about it.",
        "Not a cent, I'm absolutely furious.",
        "I'm calling a lawyer, I'm that angry.",
    )),
    "grateful": _Bank("pos", ("grateful", "thankful", "blessed"), (
        "a stranger paid for my groceries when my card was declined",
        "my friends threw me a surprise party",
        "my parents helped me pay for college",
        "my neighbor shoveled my driveway, without me even asking",
    ), (
        "Did you get to thank them?", "How did that make you feel?",
        "Have you been able to return the favor?",
    ), (
        "I did, I'm so thankful for them.",
        "Honestly, so blessed, it made my whole week.",
        "Not yet, but I'm going to, I'm so grateful.",
    )),
    "guilty": _Bank("neg", ("guilty", "bad", "terrible"), (
        "I forgot to call my grandma on her birthday",
        "I ate the last piece of cake that my sister was saving",
        "I blamed my brother for something I broke",
        "I skipped my friend's show to stay home and watch TV",
    ), (
        "Did you tell them the truth?", "Have you made it up to them?", "Why do you feel so bad about it?",
    ), (
        "Not yet, and I feel so guilty.",
        "I'm trying to, I feel terrible about it.",
        "Because they didn't deserve it, it was my fault.",
    )),
    "hopeful": _Bank("pos", ("hopeful", "optimistic", "positive"), (
        "I applied for a job I really want",
        "my mom started a new treatment that's supposed to work",
        "I sent my novel to a few publishers",
        "the doctor said my knee might heal without surgery",
    ), (
        "When will you find out?", "What would it mean for you?", "Are you feeling positive about it?",
    ), (
        "Hopefully soon, I'm keeping my fingers crossed.",
        "It would change everything, I'm really hopeful.",
        "I am, I have a good feeling this time.",
    )),
    "impressed": _Bank("pos", ("impressed", "amazed", "blown away"), (
        "my little brother built a robot all by himself",
        "I watched a street musician play three instruments at once",
        "my coworker finished a marathon after only training for two months",
        "my daughter learned to read at four years old",
    ), (
        "How did they manage that?", "Did you tell them how amazing it was?",
        "Have you ever seen anything like it?",
    ), (
        "I have no idea, it was amazing.",
        "Of course, I'm so impressed with them.",
        "Never, I was completely blown away.",
    )),
    "jealous": _Bank("neg", ("jealous", "envious", "bitter"), (
        "my best friend got the job I applied for",
        "my sister got a brand new car for her birthday",
        "my coworker keeps going on fancy vacations",
        "my ex started dating someone who seems perfect",
    ), (
        "Do you think you'll get the same chance?", "Have you talked to anyone about it?",
        "Is it hard to be around them right now?",
    ), (
        "Maybe someday, but I'm still jealous.",
        "No, I'm embarrassed to be so envious.",
        "A little, I try not to be bitter about it.",
    )),
    "joyful": _Bank("pos", ("joyful", "happy", "overjoyed"), (
        "my baby niece said my name for the first time",
        "we spent the whole day at the beach, laughing and dancing",
        "my whole family got together for the holidays",
        "I got a puppy for my birthday",
    ), (
        "That's so sweet, what was the best part?", "Did you take any pictures?", "How did everyone react?",
    ), (
        "Just being together, I was so happy.",
        "Tons, I keep looking at them and smiling.",
        "Everyone was overjoyed, it was a perfect day.",
    )),
    "lonely": _Bank("neg", ("lonely", "alone", "isolated"), (
        "I moved to a new city where I don't know anybody",
        "all my friends went away to college without me",
        "I spent my birthday by myself in my apartment",
        "my husband's been working overseas for months",
    ), (
        "Have you tried meeting new people?", "Do you talk to anyone back home?",
        "What do you do to keep busy?",
    ), (
        "I've tried, but it's hard, I still feel alone.",
        "Sometimes on the phone, but it's not the same.",
        "Mostly TV, it gets lonely at night.",
    )),
    "nostalgic": _Bank("neu", ("nostalgic", "wistful", "homesick for the old days"), (
        "I found my old yearbook in the attic",
        "I heard a song that we used to play all summer in high school",
        "I drove past the house I grew up in",
        "I played an old video game from my childhood",
    ), (
        "Do you miss those days?", "What's your favorite memory from back then?",
        "Do you still talk to your old friends?",
    ), (
        "All the time, things were so simple back then.",
        "The summers at the lake, I remember them so well.",
        "A few of them, we always end up remembering the old days.",
    )),
    "prepared": _Bank("neu", ("prepared", "ready", "organized"), (
        "I packed my bags a week before the trip",
        "I made a checklist for the hurricane and stocked up on water",
        "I practiced my interview answers every night",
        "I set aside an emergency fund just in case",
    ), (
        "Do you always plan ahead like that?", "Did all the planning pay off?",
        "Is there anything left to do?",
    ), (
        "Pretty much, I like being ready for anything.",
        "It did, everything went smoothly.",
        "Nope, I'm completely prepared.",
    )),
    "proud": _Bank("pos", ("proud", "honored", "beaming with pride"), (
        "my son graduated from college with honors",
        "I finally finished my first marathon",
        "I got promoted after years of hard work",
        "my daughter won first place at the science fair",
    ), (
        "You must be so proud, how did you celebrate?", "How long did it take to get there?",
        "What did everyone say?",
    ), (
        "We went out to dinner, I'm so proud.",
        "Years of hard work, it was worth it.",
        "Everyone congratulated us, it felt amazing.",
    )),
    "sad": _Bank("neg", ("sad", "down", "blue"), (
        "my best friend moved across the country",
        "I had to give my cat away because of my allergies",
        "it rained on the day of my graduation",
        "I found out my favorite teacher passed away",
    ), (
        "Do you get to see them anymore?", "Are you feeling any better?",
        "Is there anything that cheers you up?",
    ), (
        "Not really, and I miss them a lot.",
        "A little, but I'm still pretty down.",
        "Talking about it helps, thanks.",
    )),
    "sentimental": _Bank("neu", ("sentimental", "emotional", "teary"), (
        "I found a letter my grandma wrote me before she passed",
        "I looked through our old wedding photos",
        "my kids gave me a handmade card for mother's day",
        "I kept my dad's old watch and wore it for the first time",
    ), (
        "That sounds special, what did it say?", "Do you keep things like that?",
        "Did it bring back memories?",
    ), (
        "It was just sweet, I cried a little.",
        "I do, I'm very sentimental about stuff like that.",
        "So many, it made me emotional.",
    )),
    "surprised": _Bank("pos", ("surprised", "shocked", "stunned"), (
        "I came home and my whole family was there for my birthday",
        "I found a hundred dollars in an old jacket",
        "my friend showed up at my door from across the country",
        "my boss gave me a raise out of nowhere",
    ), (
        "Did you have any idea?", "What did you do with it?", "How did you react?",
    ), (
        "No idea at all, I was totally shocked.",
        "I treated myself, it was such a surprise.",
        "I just stood there stunned, then I started laughing.",
    )),
    "terrified": _Bank("neg", ("terrified", "scared to death", "frightened"), (
        "a huge spider crawled across my pillow in the middle of the night",
        "the plane hit bad turbulence and dropped really fast",
        "I heard someone trying to open my front door at 3am",
        "my car spun out on the highway",
    ), (
        "Oh my gosh, were you hurt?", "What did you do?", "Could you sleep after that?",
    ), (
        "No, thankfully, but I was scared to death.",
        "I froze, I was so scared I couldn't move.",
        "Not at all, I kept checking every corner.",
    )),
    "trusting": _Bank("pos", ("trusting", "reassured", "at ease"), (
        "I let my neighbor hold a spare key to my house",
        "I let my teenage son borrow the car for the first time",
        "my friend kept a big secret I told her",
        "I let my sister manage the money for our trip",
    ), (
        "Do you trust them completely?", "Was it hard to let go?", "Did everything work out?",
    ), (
        "I do, they've never let me down.",
        "A bit, but I know I can count on them.",
        "It did, I'm glad I trusted them.",
    )),
}

_SITUATION_TEMPLATES = (
    "I felt {feel} when {event}.", "I was {feel} when {event}.", "I was so {feel} after {event}.",
)
_SPEAKER_OPENERS = (
    "I was so {feel} when {event}.",
    "I've been feeling {feel} ever since {event}.",
    "You won't believe it, {event}. I'm still {feel}.",
    "So, {event}, and honestly I'm {feel}.",
    "I can't stop thinking about it, {event}.",
)
_LISTENER_OPENERS = {
    "neg": ("Oh no, I'm so sorry to hear that.", "That sounds really hard.", "Oh wow, that's so hard.",
            "I'm sorry, that's not fun at all.", "Ugh, I can't imagine how that felt."),
    "pos": ("That's wonderful!", "Oh, that's so great to hear.", "Wow, good for you!",
            "That's awesome, I'm happy for you.", "Aw, I love that."),
    "neu": ("Oh, I know that feeling.", "That's really something.", "I can understand that.",
            "Aw, that's sweet.", "I get that, it's a lot."),
}
_LISTENER_COMMENTS = {
    "neg": ("Well, I hope things get better soon.", "That's understandable, anyone would feel that way.",
            "Hang in there, it'll get easier.", "I'm sorry you're dealing with that."),
    "pos": ("You deserve it, enjoy every minute.", "That's the best, I hope it stays that way.",
            "I'm really happy for you.", "That's amazing, good for you."),
    "neu": ("It's nice to have moments like that.", "I think a lot of people feel the same way.",
            "That makes sense, thanks for sharing.", "It's good to think about those things."),
}
_SPEAKER_FEEDBACK = {
    "neg": ("Thanks, I really appreciate you listening.", "Yeah, I hope so too, thanks.",
            "You're right, I'll try to keep that in mind.", "Thanks, it helps to talk about it."),
    "pos": ("Thanks, I'm still smiling about it!", "Thank you, I really appreciate it.",
            "I will, thanks so much!", "Thanks, it's been a great week."),
    "neu": ("Yeah, it really is. Thanks for asking.", "Thanks, I think so too.",
            "It's true, I'm glad I shared it.", "Yeah, thanks for listening."),
}
_LISTENER_CLOSINGS = ("Anytime, take care.", "Of course, good luck with everything!",
                      "You're welcome, I'm glad you told me.", "No problem, have a good one.")
#: Utterance counts and their weights: odd lengths end on a speaker turn (feedback for every listener turn).
_LENGTHS, _LENGTH_WEIGHTS = (4, 5, 6), (0.15, 0.7, 0.15)


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def _make_conversation(rng: random.Random, conv_id: str, emotion: str) -> Conversation:
    """One templated dialogue: speaker opens, listener empathises and asks, speaker reacts, ..."""
    bank = _BANKS[emotion]
    event, feel = rng.choice(bank.events), rng.choice(bank.feel)
    situation = _sentence(rng.choice(_SITUATION_TEMPLATES).format(feel=feel, event=event))
    first_q, second_q = rng.sample(bank.questions, 2)
    comment = rng.choice(_LISTENER_COMMENTS[bank.valence])
    turns = [
        _sentence(rng.choice(_SPEAKER_OPENERS).format(feel=rng.choice(bank.feel), event=event)),
        f"{rng.choice(_LISTENER_OPENERS[bank.valence])} {first_q}",
        rng.choice(bank.followups),
        rng.choice((comment, f"{comment} {second_q}")),
        rng.choice(_SPEAKER_FEEDBACK[bank.valence]),
        rng.choice(_LISTENER_CLOSINGS),
    ]
    length = rng.choices(_LENGTHS, weights=_LENGTH_WEIGHTS)[0]
    return Conversation(conv_id=conv_id, emotion=emotion, situation=situation, utterances=turns[:length])


def generate_builtin_corpus(
    seed: int = 0, train_per_emotion: int = 24, valid_per_emotion: int = 3, test_per_emotion: int = 3
) -> dict[str, list[Conversation]]:
    """Deterministic (per ``seed``) demonstration corpus: ``{split: conversations}`` over all 32 emotions."""
    rng = random.Random(seed)
    per_emotion = dict(zip(SPLITS, (train_per_emotion, valid_per_emotion, test_per_emotion)))
    seen: set[tuple[str, ...]] = set()
    corpus: dict[str, list[Conversation]] = {}
    for split in SPLITS:
        plan = [emotion for emotion in EMOTIONS for _ in range(per_emotion[split])]
        rng.shuffle(plan)
        conversations = []
        for index, emotion in enumerate(plan):
            conv_id = f"builtin:{split}:{index:05d}"
            for _ in range(20):  # avoid exact duplicates (within and across splits) when possible
                conv = _make_conversation(rng, conv_id, emotion)
                key = (conv.situation, *conv.utterances)
                if key not in seen:
                    break
            seen.add(key)
            conversations.append(conv)
        corpus[split] = conversations
    return corpus


def _field(text: str) -> str:
    """ED encodes commas inside text as ``_comma_``; newlines never occur in ED fields."""
    return text.replace(",", "_comma_").replace("\n", " ")


def write_builtin_csvs(root: Path, corpus: dict[str, list[Conversation]]) -> None:
    """Write ``{split}.csv`` under ``root`` in the official ED layout (no quoting, ``_comma_`` encoding)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, conversations in corpus.items():
        lines = [CSV_HEADER]
        for conv in conversations:
            for i, utterance in enumerate(conv.utterances):
                worker = SPEAKER_WORKER_ID if i % 2 == 0 else LISTENER_WORKER_ID
                fields = (conv.conv_id, str(i + 1), conv.emotion, conv.situation, str(worker), utterance)
                lines.append(",".join(_field(f) for f in fields) + ",,")  # empty selfeval and tags
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
