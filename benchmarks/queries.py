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
    # The same 14 in Korean, then a few more.
    ("ko", "개", "darknet-dog"),  # a dog
    ("ko", "자전거 옆에 있는 개", "darknet-dog"),  # a dog next to a bicycle
    ("ko", "고양이", "skimage-chelsea"),  # a cat
    ("ko", "기린 두 마리와 얼룩말", "darknet-giraffe"),  # two giraffes and a zebra
    ("ko", "들판의 말들", "darknet-horses"),  # horses in a field
    ("ko", "말과 함께 있는 사람", "darknet-person"),  # a person with a horse
    ("ko", "해변에서 연을 날리는 사람들", "darknet-kite"),  # people flying kites on a beach
    ("ko", "독수리", "darknet-eagle"),  # an eagle
    ("ko", "커피 한 잔", "skimage-coffee"),  # a cup of coffee
    ("ko", "영상 분할에 관한 인쇄된 페이지", "skimage-page"),  # a printed page about segmentation
    ("ko", "우주비행사", "skimage-astronaut"),  # an astronaut
    ("ko", "카메라를 든 남자", "skimage-camera"),  # a man with a camera
    ("ko", "군복", "matplotlib-grace_hopper"),  # a military uniform
    ("ko", "로켓 발사", "skimage-rocket"),  # a rocket launch
    ("ko", "말 두 마리", "darknet-horses"),  # two horses
    ("ko", "기린과 얼룩말", "darknet-giraffe"),  # giraffe and zebra
]
