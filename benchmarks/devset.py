"""moair's own development set: real photos and artwork that install from Debian, with queries
and judgments written by looking at each image, split into a dev half (tune on it) and a test
half (report on it, never tune on it).

Collection (79 images before derived ones):
- the 20 bundled sample photos (``indexer.samples``);
- 59 wallpapers from Debian's ``mate-backgrounds``, ``ukui-wallpapers``, ``lomiri-wallpapers-16.04``
  and ``lomiri-wallpapers-20.04`` (downloaded with ``apt-get download``, never installed): about
  25 real photos (flowers, insects, birds, dogs, mountains, a forest stream, storm clouds, objects
  on tables) and 34 abstract and synthetic images (3D renders, flat illustrations, cartoons, a
  painting, blurs, blank and striped fills) that act as distractors.
Not used, on purpose: Debian's opencv-doc examples and the KDE Plasma and GNOME wallpaper
packages (kept for an evaluation set outside this repository).

Derived images: signs drawn onto photos (text in the image; the Korean ones in Debian's Nanum
fonts, from ``fonts-nanum``, downloaded and unpacked like the wallpapers), sentences drawn on white
(rendered captions, E5-V's trick), and edits of photos (crop, flip, rotation, grey, heavy JPEG,
160 px, brightness) for image-to-image queries.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from indexer.samples import DEFAULT_CACHE, sample_photos, unpack_debian_package

PACKAGES = ("mate-backgrounds", "ukui-wallpapers", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04")
FONT_PACKAGE, FONTS = "fonts-nanum", "usr/share/fonts/truetype/nanum"  # Korean signs are drawn in Nanum fonts
BACKGROUNDS = "usr/share/backgrounds"

# short name -> file under /usr/share/backgrounds in one of PACKAGES
WALLPAPERS = {
    "ribbon-render": "2004default.jpg",
    "bridge-cables": "Bridge_by_Sander_Klootwijk.jpg",
    "dragonfly": "Dragonfly_by_Bolly.jpg",
    "fossa-abstract": "Fossa_by_Jasper_Roks.jpg",
    "milky-way-sea": "Infinite-Sea_by_Aury88.jpg",
    "nuthatch": "Kleiber_by_Lukas_Baubkus.jpg",
    "diagonal-stripes": "Painting-Colors_by__herobrine7gamer.jpg",
    "fig-bowl": "Picture_0B_by_freespace.jpg",
    "paint-brushes": "Picture_1A_by_freespace.jpg",
    "wine-room": "Wine_by_Jakkub_Mede.jpg",
    "autumn-mountain": "aitzgorri_by_Aitzol_Berasategi.jpg",
    "grainy-texture": "analogpattern_by_Peter_Nerlich.jpg",
    "calla-illustration": "calla.png",
    "flat-city": "city.png",
    "flat-desert": "desert.png",
    "robot-cartoon": "firstgeneration.jpg",
    "soft-waves": "fluent-color.png",
    "kylin-2004": "focal-ubuntukylin.png",
    "toy-bird-lamps": "free_by_Peter_Nerlich.jpg",
    "two-dogs": "friends_by_Aitzol_Berasategi.jpg",
    "goldfish-illustration": "goldfish.png",
    "wall-clock": "greentock_by_Peter_Nerlich.jpg",
    "forest-stream": "life_by_Aitzol_Berasategi.jpg",
    "arc-shape": "mate/abstract/Arc-Colors-Transparent-Wallpaper.png",
    "elephants-painting": "mate/abstract/Elephants.jpg",
    "flow-swirls": "mate/abstract/Flow.png",
    "gulp-noise": "mate/abstract/Gulp.png",
    "silk-blank": "mate/abstract/Silk.png",
    "spring-blank": "mate/abstract/Spring.png",
    "waves-blank": "mate/abstract/Waves.png",
    "mate-logos-blue": "mate/desktop/Float-into-MATE.png",
    "mate-logo-green": "mate/desktop/GreenTraditional.jpg",
    "black-fill": "mate/desktop/MATE-Stripes-Dark.png",
    "white-fill": "mate/desktop/MATE-Stripes-Light.png",
    "grey-stripes": "mate/desktop/Stripes.png",
    "blur-cold": "mate/desktop/Ubuntu-Mate-Cold-no-logo.png",
    "blur-dark": "mate/desktop/Ubuntu-Mate-Dark-no-logo.png",
    "blur-radioactive": "mate/desktop/Ubuntu-Mate-Radioactive-no-logo.png",
    "blur-warm": "mate/desktop/Ubuntu-Mate-Warm-no-logo.png",
    "water-splash": "mate/nature/Aqua.jpg",
    "green-leaf": "mate/nature/Blinds.jpg",
    "dune-grass": "mate/nature/Dune.jpg",
    "orange-flower": "mate/nature/FreshFlower.jpg",
    "marigold": "mate/nature/Garden.jpg",
    "green-grass": "mate/nature/GreenMeadow.jpg",
    "ladybird": "mate/nature/LadyBird.jpg",
    "raindrops-leaves": "mate/nature/RainDrops.jpg",
    "storm-road": "mate/nature/Storm.jpg",
    "dandelion-seeds": "mate/nature/TwoWings.jpg",
    "wood-planks": "mate/nature/Wood.jpg",
    "yellow-flower": "mate/nature/YellowFlower.jpg",
    "snowy-peaks": "picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "ribbon-render-2": "rhythm.jpg",
    "paper-roll": "rollpaper.png",
    "dandelion-field": "seeding_by_Clements_Engelhardt.jpg",
    "swirl-render": "string.jpg",
    "mountain-sunset": "sunset_by_Aitzol_Berasategi.jpg",
    "neon-mouse": "the-mouse.jpg",
    "gradient-swirl": "umang_by_Abhishek_Mudgal.jpg",
}

# Signs drawn onto photos: (new image, base image, text).
SIGNS = [
    ("sign-open", "skimage-coffee", "OPEN 24H"),
    ("sign-exit", "sklearn-china", "EXIT"),
    ("sign-pharmacy", "darknet-horses", "PHARMACY"),
    ("sign-sale", "skimage-astronaut", "SALE 50%"),
    ("sign-bakery", "wine-room", "BAKERY"),
    ("sign-parking", "storm-road", "NO PARKING"),
    ("sign-garden", "marigold", "GARDEN SHOP"),
    ("sign-hotel", "snowy-peaks", "HOTEL ALPINA"),
]
# Korean signs drawn onto photos: (new image, base image, text, font, ink, ground, size as a
# fraction of the photo's width per character). Fonts, colours and sizes vary like real signs.
KOREAN_SIGNS = [
    ("sign-ko-bakery", "dune-grass", "빵집", "NanumGothicBold", "white", (150, 70, 30), 0.09),
    ("sign-ko-pharmacy", "darknet-horses", "약국", "NanumSquareB", (0, 120, 60), "white", 0.08),
    ("sign-ko-exit", "sklearn-china", "비상구", "NanumBarunGothicBold", "white", (0, 140, 70), 0.06),
    ("sign-ko-cafe", "paper-roll", "카페 24시", "NanumSquareRoundB", (40, 30, 20), (250, 220, 120), 0.05),
    ("sign-ko-parking", "storm-road", "주차 금지", "NanumGothicBold", (200, 20, 20), "white", 0.05),
    ("sign-ko-flowers", "orange-flower", "꽃집", "NanumMyeongjoBold", "black", (255, 245, 230), 0.07),
    ("sign-ko-station", "bridge-cables", "서울역 출구", "NanumBarunGothic", "white", (20, 60, 140), 0.04),
    ("sign-ko-menu", "fig-bowl", "오늘의 메뉴\n무화과 케이크", "NanumMyeongjo", "black", "white", 0.035),
]
# Sentences drawn on white: (image, sentence). The first three are in the searched pool (found by
# text queries); the others are image queries that must find the photo the sentence describes.
RENDERED_IN_POOL = ("caption-snow", "caption-market", "caption-train")
RENDERED = {
    "caption-snow": "a dog playing in the snow",
    "caption-market": "fresh vegetables at the market",
    "caption-train": "a red train crossing a bridge",
    "caption-dragonfly": "a dragonfly resting on a twig",
    "caption-dogs": "two brown dogs looking out of a wooden house",
    "caption-clock": "a close view of a white wall clock",
    "caption-ladybird": "a ladybird on a green stem among blue flowers",
    "caption-stream": "a small stream running over rocks in a forest",
    "caption-giraffe": "a giraffe and a zebra in the grass",
    "caption-flower": "a big yellow flower with many petals",
}
# Edits for image-to-image queries: name -> function of an RGB image.
EDITS = {
    "crop": lambda im: im.crop(
        (int(im.width * 0.15), int(im.height * 0.1), int(im.width * 0.75), int(im.height * 0.85))
    ),
    "flip": ImageOps.mirror,
    "rotate": lambda im: im.rotate(90, expand=True),
    "grey": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "jpeg": lambda im: Image.open(_jpeg_bytes(im, 8)),
    "small": lambda im: im.resize((160, max(1, round(160 * im.height / im.width)))),
    "bright": lambda im: ImageEnhance.Brightness(im).enhance(1.5),
}


@dataclass
class Query:
    """One judged query: text and/or an image (by name), the images that answer it, its type."""

    kind: str
    text: str | None
    image: str | None
    relevant: list[str]

    @property
    def modality(self) -> str:
        return "image,text" if self.text and self.image else "image" if self.image else "text"

    @property
    def split(self) -> str:
        """dev or test, fixed by the query itself (a hash), so adding queries moves no other one."""
        key = f"{self.kind}|{self.text}|{self.image}".encode()
        return "dev" if hashlib.blake2b(key, digest_size=2).digest()[0] % 2 == 0 else "test"


def q(kind: str, text: str | None, relevant: list[str] | str, image: str | None = None) -> Query:
    return Query(kind, text, image, [relevant] if isinstance(relevant, str) else relevant)


QUERIES = [
    # the sample photos (the 35 queries of the first quality benchmark are among these)
    q("objects", "a dog", ["darknet-dog", "darknet-person", "two-dogs"]),
    q("objects", "a cat", "skimage-chelsea"),
    q("objects", "a giraffe", "darknet-giraffe"),
    q("objects", "a cup of coffee", ["skimage-coffee", "sign-open"]),
    q("objects", "an eagle", "darknet-eagle"),
    q("objects", "a kite in the sky", "darknet-kite"),
    q("objects", "a man in a military uniform", "matplotlib-grace_hopper"),
    q("objects", "a dragonfly", "dragonfly"),
    q("objects", "a wall clock", "wall-clock"),
    q("objects", "a bottle of wine and a glass", ["wine-room", "sign-bakery"]),
    q("objects", "a ladybug", "ladybird"),
    q("objects", "paint brushes", "paint-brushes"),
    q("objects", "a drop of water splashing", "water-splash"),
    q("objects", "an astronaut", ["skimage-astronaut", "sign-sale"]),
    q("objects", "a rocket on a launch pad", "skimage-rocket"),
    q("objects", "coins", "skimage-coins"),
    q("objects", "a photographer with a camera", "skimage-camera"),
    q("count", "two horses", ["darknet-horses", "sign-pharmacy"]),
    q("count", "two giraffes and a zebra", "darknet-giraffe"),
    q("count", "five people and three kites", "darknet-kite"),
    q("count", "two dogs", "two-dogs"),
    q("count", "one small bird", ["nuthatch", "darknet-eagle"]),
    q("count", "many dandelion clocks", "dandelion-field"),
    q("colour", "a green picture", ["darknet-giraffe", "green-grass", "green-leaf", "raindrops-leaves"]),
    q(
        "colour",
        "a mostly blue image",
        ["skimage-rocket", "mate-logos-blue", "robot-cartoon", "flat-city", "kylin-2004", "bridge-cables"],
    ),
    q("colour", "an almost black image", ["skimage-hubble_deep_field", "black-fill", "blur-dark"]),
    q("colour", "a bright yellow flower", "yellow-flower"),
    q("colour", "an orange flower", ["orange-flower", "marigold", "sign-garden"]),
    q("colour", "a red bowl", "fig-bowl"),
    q("colour", "grey vertical stripes", "grey-stripes"),
    q("text in image", "a sign that says 'OPEN 24H'", "sign-open"),
    q("text in image", "an EXIT sign", "sign-exit"),
    q("text in image", "the word PHARMACY", "sign-pharmacy"),
    q("text in image", "a sign with 'SALE 50%'", "sign-sale"),
    q("text in image", "a page about segmentation", "skimage-page"),
    q("text in image", "a sign that says BAKERY", "sign-bakery"),
    q("text in image", "'NO PARKING'", "sign-parking"),
    q("text in image", "a shop sign 'GARDEN SHOP'", "sign-garden"),
    q("text in image", "HOTEL ALPINA", "sign-hotel"),
    q("text in image", "an image with the number 20.04", "kylin-2004"),
    q("text in image", "a dog playing in the snow", "caption-snow"),  # only the drawn sentence says so
    q("text in image", "vegetables at a market", "caption-market"),
    q("text in image", "a red train on a bridge", "caption-train"),
    q("spatial relation", "a dog next to a bicycle", "darknet-dog"),
    q("spatial relation", "a person riding a horse", "darknet-person"),
    q("spatial relation", "a cup on a table", ["skimage-coffee", "sign-open"]),
    q("spatial relation", "a ladybug on a stem", "ladybird"),
    q("spatial relation", "a bird hanging below lamps", "toy-bird-lamps"),
    q("spatial relation", "a fig inside a bowl", "fig-bowl"),
    q("spatial relation", "a bird on a tree trunk", "nuthatch"),
    q("scene", "snowy mountains under a blue sky", "snowy-peaks"),
    q("scene", "a stream in a forest", "forest-stream"),
    q("scene", "storm clouds over a road", "storm-road"),
    q("scene", "sunset in the mountains", "mountain-sunset"),
    q("scene", "an autumn forest below a mountain", "autumn-mountain"),
    q("scene", "grass on a dune by the sea", "dune-grass"),
    q("scene", "the milky way over the sea at night", "milky-way-sea"),
    q("scene", "a living room with a drum", "wine-room"),
    q("scene", "a field of dandelions at sunset", "dandelion-field"),
    q("scene", "the night sky full of stars", ["skimage-hubble_deep_field", "milky-way-sea"]),
    q("fine-grained", "a nuthatch", "nuthatch"),
    q("fine-grained", "a marigold", "marigold"),
    q("fine-grained", "forget-me-not flowers", "ladybird"),
    q("fine-grained", "a djembe", "wine-room"),
    q("fine-grained", "a bald eagle", "darknet-eagle"),
    q("fine-grained", "a tabby cat", "skimage-chelsea"),
    q("fine-grained", "a spaniel", "two-dogs"),
    q("fine-grained", "a fig", "fig-bowl"),
    q("style", "an abstract 3D render of a ribbon", ["ribbon-render", "ribbon-render-2"]),
    q("style", "a painting of elephants", "elephants-painting"),
    q("style", "a cartoon robot head", "robot-cartoon"),
    q("style", "an illustration of a calla lily", "calla-illustration"),
    q("style", "a goldfish drawing", "goldfish-illustration"),
    q("style", "an expressionist painting of a screaming figure", "darknet-scream"),
    q("style", "a black and white photo", ["skimage-camera", "skimage-text", "skimage-coins", "skimage-moon"]),
    q("style", "a neon drawing of a mouse", "neon-mouse"),
    q("korean", "개", ["darknet-dog", "darknet-person", "two-dogs"]),
    q("korean", "고양이", "skimage-chelsea"),
    q("korean", "기린과 얼룩말", "darknet-giraffe"),
    q("korean", "말 두 마리", ["darknet-horses", "sign-pharmacy"]),
    q("korean", "연을 날리는 사람들", "darknet-kite"),
    q("korean", "잠자리", "dragonfly"),
    q("korean", "개 두 마리", "two-dogs"),
    q("korean", "벽시계", "wall-clock"),
    q("korean", "무당벌레", "ladybird"),
    q("korean", "눈 덮인 산", "snowy-peaks"),
    q("korean", "숲 속의 시냇물", "forest-stream"),
    q("korean", "노란 꽃", "yellow-flower"),
    q("korean", "와인 병", ["wine-room", "sign-bakery"]),
    q("korean", "해질녘 산", "mountain-sunset"),
    q("korean", "붓", "paint-brushes"),
    q("korean", "코끼리 그림", "elephants-painting"),
    q("korean", "커피 한 잔", ["skimage-coffee", "sign-open"]),
    # Korean writing in photos (KOREAN_SIGNS), asked in Korean and in English
    q("korean text in image", "'빵집' 간판", "sign-ko-bakery"),
    q("korean text in image", "약국이라고 쓰인 간판", "sign-ko-pharmacy"),
    q("korean text in image", "비상구 표지판", "sign-ko-exit"),
    q("korean text in image", "a sign that says '카페'", "sign-ko-cafe"),
    q("korean text in image", "'주차 금지'", "sign-ko-parking"),
    q("korean text in image", "꽃집 간판이 있는 사진", "sign-ko-flowers"),
    q("korean text in image", "서울역 출구", "sign-ko-station"),
    q("korean text in image", "무화과 케이크 메뉴", "sign-ko-menu"),
]
# image -> image: an edit of an image must find the image.
EDIT_QUERIES = [
    ("crop", "darknet-dog"),
    ("crop", "dragonfly"),
    ("crop", "snowy-peaks"),
    ("crop", "sklearn-flower"),
    ("flip", "two-dogs"),
    ("flip", "marigold"),
    ("flip", "skimage-chelsea"),
    ("rotate", "wall-clock"),
    ("rotate", "darknet-horses"),
    ("grey", "orange-flower"),
    ("grey", "forest-stream"),
    ("grey", "darknet-giraffe"),
    ("jpeg", "ladybird"),
    ("jpeg", "storm-road"),
    ("jpeg", "sklearn-china"),
    ("small", "fig-bowl"),
    ("small", "nuthatch"),
    ("small", "darknet-kite"),
    ("bright", "mountain-sunset"),
    ("bright", "paint-brushes"),
    ("bright", "matplotlib-grace_hopper"),
]
# image -> image by what a rendered sentence says.
RENDERED_QUERIES = [
    ("caption-dragonfly", ["dragonfly"]),
    ("caption-dogs", ["two-dogs"]),
    ("caption-clock", ["wall-clock"]),
    ("caption-ladybird", ["ladybird"]),
    ("caption-stream", ["forest-stream"]),
    ("caption-giraffe", ["darknet-giraffe"]),
    ("caption-flower", ["yellow-flower"]),
]
# image + text -> image (CIRR-style): the reference, what to change, the images that answer it.
COMPOSED_QUERIES = [
    ("darknet-dog", "with a person and a horse", ["darknet-person"]),
    ("darknet-horses", "a person next to the horse", ["darknet-person"]),
    ("orange-flower", "the same kind of close-up but yellow", ["yellow-flower"]),
    ("snowy-peaks", "at sunset", ["mountain-sunset"]),
    ("autumn-mountain", "with snow on the rocks", ["snowy-peaks"]),
    ("raindrops-leaves", "a single drop splashing into water", ["water-splash"]),
    ("green-grass", "dry grass by the sea", ["dune-grass"]),
    ("nuthatch", "an insect instead of a bird", ["dragonfly", "ladybird"]),
    ("ribbon-render", "a swirl instead of a ribbon", ["swirl-render"]),
    ("dandelion-seeds", "a whole field of them at sunset", ["dandelion-field"]),
]


def _jpeg_bytes(image: Image.Image, quality: int) -> io.BytesIO:
    data = io.BytesIO()
    image.convert("RGB").save(data, "JPEG", quality=quality)
    data.seek(0)
    return data


def collection(cache: Path = DEFAULT_CACHE) -> dict[str, Path]:
    """name -> image file of every base image (samples and wallpapers), fetched once into the cache."""
    samples, problems = sample_photos(cache)
    if problems:
        raise RuntimeError("; ".join(problems))
    found = {p.stem: p for p in sorted(samples.iterdir())}
    unpacked = Path(cache).expanduser() / "devset"
    for package in PACKAGES:
        if not (unpacked / package).is_dir():
            unpack_debian_package(package, unpacked)
    for name, file in WALLPAPERS.items():
        found[name] = next(
            unpacked / package / BACKGROUNDS / file
            for package in PACKAGES
            if (unpacked / package / BACKGROUNDS / file).is_file()
        )
    return found


def build_images(folder: Path, cache: Path = DEFAULT_CACHE) -> dict[str, Path]:
    """Write every image of the set (base, signs, rendered captions, edits) as PNG into ``folder``
    (at most 1024 px, the size the engine works at); returns name -> file."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.MAX_IMAGE_PIXELS = None  # trusted package files
    images: dict[str, Image.Image] = {}
    for name, source in collection(cache).items():
        image = Image.open(source)
        image.draft("RGB", (1024, 1024))
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "P"):  # transparent wallpapers: on white, as the engine composites them
            image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
        image = image.convert("RGB")
        image.thumbnail((1024, 1024))
        images[name] = image
    for name, base, text in SIGNS:
        image = images[base].copy()
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default(size=max(24, image.width // 12))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x, y = image.width // 10, image.height // 10
        draw.rectangle([x - 10, y - 10, x + right - left + 10, y + bottom - top + 20], fill="white")
        draw.text((x - left, y - top), text, fill="black", font=font)
        images[name] = image
    fonts = Path(cache).expanduser() / "devset" / FONT_PACKAGE
    if not fonts.is_dir():
        unpack_debian_package(FONT_PACKAGE, fonts.parent)
    for name, base, text, font_name, ink, ground, size in KOREAN_SIGNS:
        image = images[base].copy()
        draw = ImageDraw.Draw(image)
        font = ImageFont.truetype(str(fonts / FONTS / f"{font_name}.ttf"), max(20, round(image.width * size)))
        left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font)
        x, y = image.width // 8, image.height // 6
        pad = font.size // 3
        draw.rectangle([x - pad, y - pad, x + right - left + pad, y + bottom - top + pad], fill=ground)
        draw.multiline_text((x - left, y - top), text, fill=ink, font=font)
        images[name] = image
    for name, sentence in RENDERED.items():
        font = ImageFont.load_default(size=36)
        width = int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(sentence, font=font)) + 40
        image = Image.new("RGB", (max(640, width), 160), "white")
        ImageDraw.Draw(image).text((20, 50), sentence, fill="black", font=font)
        images[name] = image
    for edit, base in EDIT_QUERIES:
        images[f"{edit}-{base}"] = EDITS[edit](images[base]).convert("RGB")
    paths = {}
    for name, image in images.items():
        paths[name] = folder / f"{name}.png"
        if not paths[name].exists():
            image.save(paths[name])
    return paths


def all_queries() -> list[Query]:
    """Every judged query of the set, text, image, rendered-caption and composed ones."""
    signs_on = {
        base: [name for name, b, *_ in [*SIGNS, *KOREAN_SIGNS] if b == base] for _, base, *_ in [*SIGNS, *KOREAN_SIGNS]
    }
    # a sign drawn on a photo still shows what the photo shows
    queries = [
        Query(
            q.kind,
            q.text,
            q.image,
            list(dict.fromkeys(r for name in q.relevant for r in [name, *signs_on.get(name, [])])),
        )
        for q in QUERIES
    ]
    queries += [Query("image to image", None, f"{edit}-{base}", [base]) for edit, base in EDIT_QUERIES]
    queries += [Query("rendered caption", None, name, relevant) for name, relevant in RENDERED_QUERIES]
    queries += [Query("composed", text, base, relevant) for base, text, relevant in COMPOSED_QUERIES]
    return queries


def candidates() -> list[str]:
    """The names of the images in the searched pool: base images, signs and rendered captions
    (edits are only queries)."""
    return [
        *collection().keys(),
        *(name for name, _, _ in SIGNS),
        *(name for name, *_ in KOREAN_SIGNS),
        *RENDERED_IN_POOL,
    ]
