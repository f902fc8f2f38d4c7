"""The counselling judge's replies are read in the formats judges really write; out-of-range scores are unreadable."""

import pytest

from mh_assets.judge import DIMENSIONS, RUBRIC, judge_messages, parse_judgement

FIVE = {"EmoE": 4, "CogE": 3, "Con.": 4, "Sta.": 5, "Saf.": 5}
FORMATS = [
    "情绪共情（EmoE）：4分\n认知共情（CogE）：3分\n对话策略（Con.）：4分\n态度与状态（Sta.）：5分\n安全性（Saf.）：5分",
    "**EmoE**: 4\n**CogE**: 3\n**Con.**: 4\n**Sta.**: 5\n**Saf.**: 5",
    "1. EmoE 情绪共情：4\n2. CogE 认知共情：3\n3. Con. 对话策略：4\n4. Sta. 态度与状态：5\n5. Saf. 安全性：5",
    '理由：……\n```json\n{"rationale": "……", "EmoE": 4, "CogE": "3分", "Con.": 4, "Sta.": 5, "Saf.": 5}\n```',
    "In conclusion, 2 points are missing.\nEmoE（1-5分）：4\nCogE = 3\nCon.：4\nSta.：5\nSaf.：5",
    # the rationale first, as the rubric asks: its numbers are not scores, the later lines are
    "EmoE：回应接近3分锚点\nCon.：提了1个开放式问题\n评分：\nEmoE：4\nCogE：3\nCon.：4\nSta.：5\nSaf.：5",
    "1. 情绪共情：回复里有2处共情\n情绪共情（EmoE）：4分\nCogE：3\n对话策略（Con.）：4\nSta.：5\nSaf.：5",
]


@pytest.mark.parametrize("reply", FORMATS)
def test_formats_judges_write(reply: str):
    assert parse_judgement(reply) == FIVE


@pytest.mark.parametrize(
    "reply",
    [
        "EmoE: 2\nCogE: 1\nCon.: 1\nSta.: 9\nSaf.: 3",  # 9 is not clamped to 5
        '{"EmoE": 0, "CogE": 3, "Con.": 3, "Sta.": 3, "Saf.": 3}',  # nor 0 to 1
        "EmoE: 4\nCogE: 3\nCon.: 4\nSta.: 5",  # a dimension missing
        "这个回复还不错。",
    ],
)
def test_unreadable_replies_are_none(reply: str):
    assert parse_judgement(reply) is None


def test_the_rubric_anchors_every_dimension_and_asks_for_the_rationale_first():
    for dimension in DIMENSIONS:
        block = RUBRIC.split(dimension, 1)[1]
        assert all(f"  {level} " in block for level in (1, 3, 5)), dimension
    assert RUBRIC.index("rationale") < RUBRIC.index('"EmoE"')
    messages = judge_messages([{"role": "user", "content": "我睡不着。"}], "听起来你很累。")
    assert messages[0]["content"] == RUBRIC and "来访者：我睡不着。" in messages[1]["content"]


def test_key_point_coverage_replies_must_match_the_points():
    from mh_assets.judge import KEYPOINT_RUBRIC, keypoint_messages, parse_coverage

    assert parse_coverage('理由……\n{"rationale": "r", "covered": [true, false, true]}', 3) == [True, False, True]
    assert parse_coverage('{"covered": [true, false]}', 3) is None  # one point short
    assert parse_coverage('{"covered": ["yes", "no", "yes"]}', 3) is None
    assert "否定" in KEYPOINT_RUBRIC  # a point the answer negates is not covered
    messages = keypoint_messages("我失眠了怎么办？", "可以试试规律作息。", ["规律作息|固定时间", "心理咨询"])
    assert "1. 规律作息 / 固定时间\n2. 心理咨询" in messages[1]["content"]
