"""Text queries with known answers on the bundled sample photos (file stem -> which photo is right)."""

QUERIES = [
    ("en", "a dog", "darknet-dog"),
    ("en", "a dog next to a bicycle", "darknet-dog"),
    ("en", "a cat", "skimage-chelsea"),
    ("en", "two giraffes and a zebra", "darknet-giraffe"),
    ("en", "horses in a field", "darknet-horses"),
    ("en", "a person with a horse", "darknet-person"),
    ("en", "people flying kites on a beach", "darknet-kite"),
    ("en", "an eagle", "darknet-eagle"),
    ("en", "a cup of coffee", "skimage-coffee"),
    ("en", "a printed page about segmentation", "skimage-page"),
    ("en", "an astronaut", "skimage-astronaut"),
    ("en", "a man with a camera", "skimage-camera"),
    ("en", "a military uniform", "matplotlib-grace_hopper"),
    ("en", "a rocket launch", "skimage-rocket"),
    ("ko", "개", "darknet-dog"),  # dog
    ("ko", "고양이", "skimage-chelsea"),  # cat
    ("ko", "기린과 얼룩말", "darknet-giraffe"),  # giraffe and zebra
    ("ko", "말 두 마리", "darknet-horses"),  # two horses
    ("ko", "독수리", "darknet-eagle"),  # eagle
    ("ko", "커피 한 잔", "skimage-coffee"),  # a cup of coffee
]
