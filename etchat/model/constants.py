"""Token conventions of E.T. Chat, in one place (spec §1.6).

`<image>` never enters a vocabulary: the data code splits the prompt on it and puts `IMAGE_TOKEN_INDEX`
into `input_ids`; the model replaces that one id by the frame tokens of a video (one per frame).
`<vid>` is a real vocabulary token (id 32011 in the released Phi-3 tokenizer); its embedding carries a
frame token and its hidden state picks a frame.
"""

from __future__ import annotations

IGNORE_INDEX: int = -100
IMAGE_TOKEN_INDEX: int = -200
IMAGE_TOKEN: str = "<image>"
MATCH_TOKEN: str = "<vid>"

# The released ETChat-Phi3-Mini-Stage-3 tokenizer puts <vid> on the unused row 32011 of Phi-3's 32064.
PHI3_MATCH_TOKEN_ID: int = 32011

PHI3_CHAT_TOKENS: tuple[str, ...] = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")

# The Q-Former's BERT tokenizer gets this extra bos token (InstructBLIP); vocabulary 30522 + 1.
QFORMER_BOS_TOKEN: str = "[DEC]"
# sha256 of bert-base-uncased/vocab.txt (git blob fb140275c155a9c7c5a3b3e0e77a9e839594a938, 30522 lines).
BERT_UNCASED_VOCAB_SHA256: str = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
