"""The built-in safety content: what the portal shows until the centre's first bundle arrives.

A bundle like any other (same format, checked by the same rules) with version 0, so
every bundle the centre signs replaces it; it is also shown whenever nothing in the
centre's bundle is valid at the moment. Plain text, Simplified Chinese with English,
short paragraphs and no images, so the page stays light on a slow phone.
"""

from __future__ import annotations

from typing import Any


def _item(item_id: str, priority: int, title: tuple[str, str], zh: list[str], en: list[str]) -> dict[str, Any]:
    return {
        "id": item_id,
        "priority": priority,
        "pinned": False,
        "valid_from": None,
        "valid_until": None,
        "title": {"zh": title[0], "en": title[1]},
        "body": {"zh": zh, "en": en},
        "image": None,
    }


PICK_UP = _item(
    "pick-up-safety",
    90,
    ("接送安全", "Safe pick-up"),
    [
        "请在黄线外等候，不要堵住校门和通道，让孩子和老师顺畅进出。",
        "不要在人行横道、公交站和消防通道上停车，听从交警和护校人员的指挥。",
        "接到孩子后请尽快离开，不要在校门口聚集。",
    ],
    [
        "Please wait behind the yellow line and keep the gate and the path clear for children and teachers.",
        "Do not park on the crossing, at the bus stop or in the fire lane; follow the traffic police and the"
        " school's guards.",
        "Once you have your child, please move on rather than gathering at the gate.",
    ],
)

STRANGERS = _item(
    "stranger-safety",
    85,
    ("防拐骗", "Never leave with a stranger"),
    [
        "告诉孩子：不跟陌生人走，不吃陌生人给的东西，不把家里的地址和电话告诉陌生人。",
        "和孩子约定一个只有家里人知道的暗号。换人来接时，请提前告诉老师，来接的人要说出暗号。",
        "有人说“你爸爸妈妈让我来接你”时，孩子要回到老师身边，由老师联系家长。",
    ],
    [
        "Teach your child: never go with a stranger, never take food from one, never tell one your address or phone"
        " number.",
        "Agree a safe word only your family knows. If someone else will collect your child, tell the teacher"
        " beforehand, and that person must say the safe word.",
        "If someone says \u201cyour mum and dad sent me\u201d, your child should go back to the teacher, who will"
        " call you.",
    ],
)

EMERGENCY = _item(
    "emergency-help",
    80,
    ("紧急求助：校门一键报警柱", "In an emergency: the alarm post at the gate"),
    [
        "校门口的一键报警柱用于紧急情况：遇到有人持械伤人、抢夺孩子等危险，请立即按下按钮。",
        "按下后，学校保安和监控中心马上收到报警并赶来处置。",
        "报警柱只在紧急情况下使用，谎报警情要承担法律责任。",
        "需要警察请拨打110，需要救护车请拨打120，火警请拨打119。",
    ],
    [
        "The one-button alarm post at the gate is for emergencies: if someone is attacking people or trying to take"
        " a child, press the button at once.",
        "The school's guards and the monitoring centre are alerted immediately and respond.",
        "Use it only in a real emergency: a false alarm is an offence.",
        "Call 110 for the police, 120 for an ambulance and 119 for the fire service.",
    ],
)

ROADS = _item(
    "road-safety",
    70,
    ("交通安全", "Road safety"),
    [
        "过马路走人行横道，看清信号灯，左右看，不要从车前车后突然跑出。",
        "骑电动自行车接送孩子时，大人和孩子都要戴好头盔，孩子坐在安全座椅上。",
        "开车接送时，让孩子坐在后排，年幼的孩子使用儿童安全座椅。",
    ],
    [
        "Cross at the crossing, wait for the green light, look both ways, and never dash out from between cars.",
        "On an e-bike, both adult and child wear a helmet, and the child sits in a proper child seat.",
        "In a car, children sit in the back, and young children in a child safety seat.",
    ],
)

WATER = _item(
    "water-safety",
    60,
    ("防溺水", "Water safety"),
    [
        "暑假、周末和雨季是溺水事故多发的时候，请看护好孩子。",
        "教孩子牢记：不私自下水游泳，不擅自与他人结伴游泳，不在没有家长或老师带领时游泳，"
        "不到没有安全设施和救护人员的水域游泳，不到不熟悉的水域游泳。",
        "看到有人落水，要大声呼救并拨打110或120，不要手拉手下水救人。",
    ],
    [
        "Most drownings happen in the summer holidays, at weekends and in the rainy season: keep an eye on your child.",
        "Teach your child: never swim alone or just with friends, only with a parent or teacher there, and never in"
        " water without lifeguards and safety equipment, or water you do not know.",
        "If someone falls in, shout for help and call 110 or 120; do not form a human chain into the water.",
    ],
)

BULLYING = _item(
    "bullying-help",
    50,
    ("校园欺凌求助", "Help with bullying"),
    [
        "孩子身上有说不清的伤、害怕上学、东西经常“丢了”，可能是受到了欺凌，请耐心地问一问。",
        "遇到欺凌请及时告诉班主任或学校，保留证据；情节严重的可以报警。",
        "12355青少年服务台提供心理咨询和法律帮助。",
    ],
    [
        "Unexplained bruises, fear of going to school or belongings that keep \u201cgetting lost\u201d can be signs"
        " of bullying: ask your child, patiently.",
        "Tell the class teacher or the school at once and keep any evidence; in serious cases call the police.",
        "The 12355 youth helpline offers counselling and legal advice.",
    ],
)

DEFAULT_BUNDLE: dict[str, Any] = {
    "id": "built-in",
    "version": 0,
    "issued": "2025-09-01T00:00:00.000Z",
    "items": [PICK_UP, STRANGERS, EMERGENCY, ROADS, WATER, BULLYING],
}
