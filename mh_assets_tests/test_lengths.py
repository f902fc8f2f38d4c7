"""Token counts: the streamed shortcut equals tokenizing the whole rendered conversation."""

import json

from mh_assets.lengths import QWEN_DEFAULT_SYSTEM, LengthCounter, percentile, summarize, template_turn
from mh_assets.sharegpt import normalize_record
from mh_assets.snapshot import SAMPLE_DATASET
from mh_assets.tiny_tokenizer import train_tokenizer


def _rendered(messages):
    head = "" if messages and messages[0]["role"] == "system" else template_turn("system", QWEN_DEFAULT_SYSTEM)
    return head + "".join(template_turn(m["role"], m["content"]) for m in messages)


def test_counts_equal_full_rendering_on_the_sample():
    tokenizer = train_tokenizer()
    conversations = [normalize_record(json.loads(x))[1] for x in SAMPLE_DATASET.read_text("utf-8").split("\n") if x]
    conversations.append(
        [{"role": "user", "content": "hi  there\n\n- a list\n"}, {"role": "assistant", "content": "！"}]
    )
    counter = LengthCounter({"tiny": tokenizer}, batch_size=50)
    for messages in conversations:
        counter.add(messages)
    expected = [len(tokenizer.encode(_rendered(m), add_special_tokens=False).ids) for m in conversations]
    assert list(counter.lengths("tiny")) == expected


def test_summary_figures():
    stats = summarize([10, 20, 30, 40, 600], max_length=512)
    assert (stats["p50"], stats["p95"], stats["max"], stats["over_max_length"]) == (30, 600, 600, 1)
    assert stats["share_over_max_length"] == 0.2
    assert sum(b["count"] for b in stats["histogram"]) == 5
    assert percentile([], 50) == 0 and summarize([], 512)["n"] == 0
