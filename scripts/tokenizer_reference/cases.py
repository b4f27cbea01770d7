"""The fixed inputs of the tokenizer reference: training records per template and inference questions per task.

Every `<image>` a multimodal record needs is written out (before or after the question), so the original's coin
flip never decides and both sides see the same text. Texts exercise what changes SentencePiece ids: leading and
trailing spaces, newlines, repeated spaces, tabs, digits, non-ASCII letters, CJK, emoji, quotes and braces, and
`<vid>` tokens next to words, digits and punctuation.
"""

from __future__ import annotations

from typing import Any


def _turns(*values: str) -> list[dict[str, str]]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


# Stage 1 (`plain`): the LLM sees "<image>" + caption + "\n"; the human text only feeds the Q-Former.
PLAIN: list[dict[str, Any]] = [
    {"name": "plain_image", "media": "image",
     "conversations": _turns("<image>\nRender a clear and concise summary of the photo.",
                             "A dog runs across a grassy field chasing a red frisbee.")},
    {"name": "plain_video_before", "media": "video",
     "conversations": _turns("<image>\nDescribe the following video concisely.",
                             "a man in a blue jacket slices 3 tomatoes on a wooden board")},
    {"name": "plain_question_first", "media": "image",
     "conversations": _turns("What is in the picture?\n<image>", "Two cats (one black, one white) on a sofa.")},
    {"name": "plain_leading_space", "media": "video",
     "conversations": _turns("<image>\nSummarize.", " The caption starts with a space and has  two spaces.")},
    {"name": "plain_newlines_digits", "media": "image",
     "conversations": _turns("<image>", "Line one\nline two with 1,234.56 and 2024-05-01\n")},
    {"name": "plain_non_ascii", "media": "image",
     "conversations": _turns("<image>\nDescribe.", "Café crème über Zürich; 東京の夜景 🌃 and naïve façade ✨")},
    {"name": "plain_emoji_first", "media": "video",
     "conversations": _turns("<image>\nDescribe.", "🎉 Party time!\tTabs\tand {braces} 'quotes' \"double\"")},
]  # fmt: skip

# Stages 2-3 (`phi3`): one or several rounds, image, video or no media, `<vid>` in questions and answers.
PHI3: list[dict[str, Any]] = [
    {"name": "phi3_video_one_round_vid", "media": "video", "stage": 3,
     "conversations": _turns(
         "<image>\nLocalize the visual content described by the given textual query 'a woman opens the fridge' in "
         "the video, and output the start and end timestamps in seconds.",
         "The given query happens in <vid> - <vid> seconds.")},
    {"name": "phi3_video_dense_vids", "media": "video", "stage": 3,
     "conversations": _turns(
         "<image>\nLocalize a series of activity events in the video, output the start and end timestamp for each "
         "event, and describe each event with sentences.",
         "<vid> - <vid> seconds, a man walks in. <vid> - <vid> seconds, he sits down.<vid>-<vid> seconds, he "
         "leaves (again).")},
    {"name": "phi3_video_vid_in_question", "media": "video", "stage": 3,
     "conversations": _turns(
         "<image>\nWhat is the person doing at <vid>? Options: (A) cooking (B) reading (C) running (D) sleeping.",
         "Best Option: (B) reading")},
    {"name": "phi3_image_after_question", "media": "image", "stage": 2,
     "conversations": _turns("What color is the bus in the image?\n<image>", "The bus is yellow.")},
    {"name": "phi3_image_multi_round", "media": "image", "stage": 2,
     "conversations": _turns(
         "<image>\nWhat is the man holding?", "He is holding an umbrella.",
         "Why might he need it?\n<image>", "It looks like it is about to rain: the sky is dark grey.",
         "<image>\nHow many people are visible? Answer with a number.", "3")},
    {"name": "phi3_video_multi_round_vid", "media": "video", "stage": 3,
     "conversations": _turns(
         "<image>\nWhen does the dog jump?", "It jumps at <vid> seconds.",
         "And when does it land?\n<image>", "It lands at <vid> seconds, about 1.5 s later.")},
    {"name": "phi3_text_only_one_round", "media": None, "stage": 2,
     "conversations": _turns("Write a haiku about autumn.",
                             "Leaves drift slowly down\ncrimson whispers on the wind\nthe year exhales gold")},
    {"name": "phi3_text_only_multi_round", "media": None, "stage": 2,
     "conversations": _turns("What is 12 * 12?", "12 * 12 = 144.", "And 144 / 16?", "144 / 16 = 9.")},
    {"name": "phi3_whitespace_messages", "media": "video", "stage": 2,
     "conversations": _turns("  <image>\n  Describe the video.  \n", "\n The video shows a beach at sunset. \n",
                             "  What happens next?\n<image>\n", "   A wave washes over the sand.")},
    {"name": "phi3_non_ascii_emoji", "media": "image", "stage": 2,
     "conversations": _turns("<image>\nWas steht auf dem Schild? 看板には何と書いてありますか？",
                             "Auf dem Schild steht „Café – geöffnet“ 😊 (営業中).")},
    {"name": "phi3_code_and_braces", "media": None, "stage": 2,
     "conversations": _turns("Print a dict in Python.",
                             "```python\nprint({'a': 1, \"b\": [2, 3]})\n```\n\tIndented\ttabs and    spaces.")},
]  # fmt: skip

# E.T. Bench questions in the forms of the benchmark's 12 tasks (the `q` of etbench_vid_v1.0.json; `<vid>` where
# the question refers to a time). Multiple-choice tasks get `Best Option: (` after the assistant header.
ETBENCH: list[dict[str, str]] = [
    {"task": "rar", "q": "Which one of the following actions happened at <vid>? Options: (A) The person opens a "
                         "door. (B) The person pours water. (C) The person sits down. (D) The person waves."},
    {"task": "eca", "q": "Which segment matches the event 'the chef adds salt'? Options: (A) <vid> - <vid> seconds "
                         "(B) <vid> - <vid> seconds (C) <vid> - <vid> seconds (D) <vid> - <vid> seconds"},
    {"task": "rvq", "q": "What does the person hold in <vid> - <vid>? Options: (A) a cup (B) a phone (C) a book "
                         "(D) a knife (E) unable to answer"},
    {"task": "tvg", "q": "Localize the visual content described by the given textual query 'person turns on the "
                         "light' in the video, and output the start and end timestamps in seconds."},
    {"task": "epm", "q": "You are given an egocentric video. Localize the moment that answers the question: Where "
                         "did I put the keys? Output the start and end timestamps in seconds."},
    {"task": "tal", "q": "Localize all the moments of the action 'high jump' in the video, and output the start "
                         "and end timestamps of each moment in seconds."},
    {"task": "evs", "q": "Summarize the video by localizing its most important moments. Output the start and end "
                         "timestamps of each moment in seconds."},
    {"task": "vhd", "q": "Watch the video and find the highlight for the query 'A man in a red shirt talks to "
                         "the camera.' Output one timestamp in seconds."},
    {"task": "dvc", "q": "Localize a series of activity events in the video, output the start and end timestamp "
                         "for each event, and describe each event with sentences."},
    {"task": "slc", "q": "Localize a series of action steps in the given video, output a start and end timestamp "
                         "for each step, and briefly describe the step."},
    {"task": "tem", "q": "The event in <vid> - <vid> seconds happens again later in the video. Localize where it "
                         "happens again, and output the start and end timestamps in seconds."},
    {"task": "gvq", "q": "What is the woman cutting? Options: (A) bread (B) paper (C) cheese (D) a rope. Answer "
                         "the question and localize the evidence with the start and end timestamps.\n"},
]  # fmt: skip

# Charades-STA lines' queries (`<video> <start> <end>##<query>`), turned into the instruction by the inference.
CHARADES: list[str] = [
    "person turns on the light.",
    "a person is putting a book on a shelf",
    "Person opening a door..",
]
