"""Korean words for what the experts see, so Korean queries meet Korean words in the caption.

The 4-bit multilingual e5 aligns short Korean nouns with English captions only loosely (Korean
Recall@1 0.17 on the sample photos with English captions alone), so the retrieval caption carries
a Korean clause too (``indexer.verbalize.korean_caption``): objects with Korean counters,
relations, colours and tags. ``imagenet_ko.tsv``: English tag, Korean name, everyday word for its kind.
"""

from __future__ import annotations

import functools
from pathlib import Path

COCO_KO = {
    "person": "사람",
    "bicycle": "자전거",
    "car": "자동차",
    "motorcycle": "오토바이",
    "airplane": "비행기",
    "bus": "버스",
    "train": "기차",
    "truck": "트럭",
    "boat": "보트",
    "traffic light": "신호등",
    "fire hydrant": "소화전",
    "stop sign": "정지 표지판",
    "parking meter": "주차 요금기",
    "bench": "벤치",
    "bird": "새",
    "cat": "고양이",
    "dog": "개",
    "horse": "말",
    "sheep": "양",
    "cow": "소",
    "elephant": "코끼리",
    "bear": "곰",
    "zebra": "얼룩말",
    "giraffe": "기린",
    "backpack": "배낭",
    "umbrella": "우산",
    "handbag": "핸드백",
    "tie": "넥타이",
    "suitcase": "여행 가방",
    "frisbee": "프리스비",
    "skis": "스키",
    "snowboard": "스노보드",
    "sports ball": "공",
    "kite": "연",
    "baseball bat": "야구 방망이",
    "baseball glove": "야구 글러브",
    "skateboard": "스케이트보드",
    "surfboard": "서핑보드",
    "tennis racket": "테니스 라켓",
    "bottle": "병",
    "wine glass": "와인잔",
    "cup": "컵",
    "fork": "포크",
    "knife": "칼",
    "spoon": "숟가락",
    "bowl": "그릇",
    "banana": "바나나",
    "apple": "사과",
    "sandwich": "샌드위치",
    "orange": "오렌지",
    "broccoli": "브로콜리",
    "carrot": "당근",
    "hot dog": "핫도그",
    "pizza": "피자",
    "donut": "도넛",
    "cake": "케이크",
    "chair": "의자",
    "couch": "소파",
    "potted plant": "화분",
    "bed": "침대",
    "dining table": "식탁",
    "toilet": "변기",
    "tv": "텔레비전",
    "laptop": "노트북",
    "mouse": "마우스",
    "remote": "리모컨",
    "keyboard": "키보드",
    "cell phone": "휴대전화",
    "microwave": "전자레인지",
    "oven": "오븐",
    "toaster": "토스터",
    "sink": "싱크대",
    "refrigerator": "냉장고",
    "book": "책",
    "clock": "시계",
    "vase": "꽃병",
    "scissors": "가위",
    "teddy bear": "곰 인형",
    "hair drier": "헤어드라이어",
    "toothbrush": "칫솔",
}
COLOR_KO = {
    "black": "검은색",
    "white": "흰색",
    "gray": "회색",
    "brown": "갈색",
    "red": "빨간색",
    "orange": "주황색",
    "yellow": "노란색",
    "green": "초록색",
    "blue": "파란색",
    "purple": "보라색",
    "pink": "분홍색",
}
MEDIUM_KO = {"photo": "사진", "black and white photo": "흑백 사진", "digital illustration": "디지털 일러스트 그림"}
PREDICATE_KO = {
    "left of": "왼쪽에",
    "right of": "오른쪽에",
    "above": "위에",
    "below": "아래에",
    "on": "위에",
    "in": "안에",
    "next to": "옆에",
}
# Counters: animals take 마리, people 명, vehicles 대. Other things are counted with bare numbers
# (컵 둘), not the generic counter 개, which is also the word for dog and matched "개" queries.
_ANIMALS = {"bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"}
_VEHICLES = {"bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat"}
_NUMBERS_BEFORE_COUNTER = ["", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉", "열"]
_NUMBERS_ALONE = ["", "하나", "둘", "셋", "넷", "다섯", "여섯", "일곱", "여덟", "아홉", "열"]

IMAGENET_KO_FILE = Path(__file__).with_name("imagenet_ko.tsv")


@functools.cache
def imagenet_ko() -> dict[str, str]:
    """ImageNet tag (first English name) -> Korean name, plus the everyday word for its kind.
    Two classes share a first name ("crane" the bird and the machine): both senses are kept, as
    the English tag keeps both."""
    names: dict[str, str] = {}
    for line in IMAGENET_KO_FILE.read_text(encoding="utf-8").splitlines():
        english, korean, kind = line.split("\t")
        words = f"{korean} {kind}".strip()
        names[english] = f"{names[english]} {words}" if english in names else words
    return names


def counted(label: str, count: int) -> str:
    """'개 한 마리', '사람 다섯 명', '자동차 12대', '컵 둘'."""
    counter = "마리" if label in _ANIMALS else "명" if label == "person" else "대" if label in _VEHICLES else ""
    if not counter:
        number = _NUMBERS_ALONE[count] if count < len(_NUMBERS_ALONE) else str(count)
    elif count < len(_NUMBERS_BEFORE_COUNTER):
        number = f"{_NUMBERS_BEFORE_COUNTER[count]} {counter}"
    else:
        number = f"{count}{counter}"
    return f"{COCO_KO.get(label, label)} {number}"


def subject_particle(noun: str) -> str:
    """이 after a final consonant (사람이), 가 after a vowel (개가)."""
    last = noun[-1]
    has_final = "가" <= last <= "힣" and (ord(last) - ord("가")) % 28 != 0
    return noun + ("이" if has_final else "가")


def relation_ko(subject: str, predicate: str, obj: str) -> str:
    """'개가 자전거 아래에 있음' from English labels and predicate."""
    other = obj == subject
    subject, obj = COCO_KO.get(subject, subject), COCO_KO.get(obj, obj)
    if other:
        obj = "다른 " + obj
    return f"{subject_particle(subject)} {obj} {PREDICATE_KO.get(predicate, predicate)} 있음"
