"""Telegram ``Update`` objects shaped as the Bot API documents them, for ``FakeTelegram.deliver``.

Built the way Telegram builds them, so an adapter is tested on what it will really receive: a
private chat's id is the user's id and a group's is negative, photos come as several sizes
smallest first, an edit keeps the message id and adds ``edit_date``, and ``entities`` mark
mentions, commands and links with offsets counted in UTF-16 code units, as Telegram counts them.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Sequence
from typing import Any, TypeAlias

JSON: TypeAlias = dict[str, Any]

BOT_ID = 7_000_000_001
BOT_USERNAME = "switchboard_test_bot"
#: Sizes Telegram makes of a 1280x960 photo, smallest first.
PHOTO_SIZES = ((90, 67), (320, 240), (800, 600), (1280, 960))
GROUP_CHATS = ("group", "supergroup")

_ENTITY = re.compile(
    r"(?P<bot_command>(?<!\S)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{5,32})?)"
    r"|(?P<mention>(?<![\w@])@[A-Za-z0-9_]{5,32})"
    r"|(?P<url>https?://\S+)"
)


def utf16_len(text: str) -> int:
    """The length Telegram gives text: UTF-16 code units, so an emoji counts twice."""
    return len(text.encode("utf-16-le")) // 2


def entities_of(text: str) -> list[JSON]:
    """The ``mention``, ``bot_command`` and ``url`` entities Telegram marks in ``text``."""
    return [
        {
            "offset": utf16_len(text[: match.start()]),
            "length": utf16_len(match.group()),
            "type": match.lastgroup,
        }
        for match in _ENTITY.finditer(text)
    ]


def user(
    user_id: int,
    first_name: str = "Ada",
    last_name: str | None = "Lovelace",
    username: str | None = "ada",
    language_code: str = "en",
) -> JSON:
    person: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
    if last_name:
        person["last_name"] = last_name
    if username:
        person["username"] = username
    person["language_code"] = language_code
    return person


def bot_user(bot_id: int = BOT_ID, username: str = BOT_USERNAME) -> JSON:
    return {"id": bot_id, "is_bot": True, "first_name": "Switchboard", "username": username}


def chat(chat_id: int, chat_type: str = "private", sender: JSON | None = None) -> JSON:
    """A chat object; refuses ids Telegram could not give a chat of that type."""
    if chat_type == "private":
        if sender is not None and sender["id"] != chat_id:
            raise ValueError("a private chat's id is the user's id")
        if chat_id <= 0:
            raise ValueError("a private chat's id is positive")
        found = sender or user(chat_id)
        names = {k: found[k] for k in ("first_name", "last_name", "username") if k in found}
        return {"id": chat_id, **names, "type": "private"}
    if chat_type in GROUP_CHATS:
        if chat_id >= 0:
            raise ValueError("a group's chat id is negative")
        return {"id": chat_id, "title": "Test group", "type": chat_type}
    raise ValueError(f"chat type {chat_type!r} is not one users write in")


def message(
    chat_id: int,
    user_id: int,
    message_id: int,
    chat_type: str = "private",
    *,
    date: int | None = None,
    sender: JSON | None = None,
    reply_to: JSON | None = None,
    **content: Any,
) -> JSON:
    """A ``Message`` a user sent; ``content`` is its text, caption, photo, ... fields."""
    sender = sender or user(user_id)
    if sender["id"] != user_id:
        raise ValueError("sender's id is not user_id")
    built: JSON = {
        "message_id": message_id,
        "from": sender,
        "chat": chat(chat_id, chat_type, sender),
        "date": int(time.time()) if date is None else date,
    }
    if reply_to is not None:
        # Telegram does not nest replies: the replied-to message carries no reply of its own.
        built["reply_to_message"] = {k: v for k, v in reply_to.items() if k != "reply_to_message"}
    built.update(content)
    return built


def text(
    update_id: int,
    chat_id: int,
    user_id: int,
    text: str,
    message_id: int,
    chat_type: str = "private",
    *,
    date: int | None = None,
    sender: JSON | None = None,
    reply_to: JSON | None = None,
    entities: Sequence[JSON] | None = None,
) -> JSON:
    """A text message; ``entities`` are found in the text unless given."""
    found = entities_of(text) if entities is None else list(entities)
    extra: JSON = {"text": text}
    if found:
        extra["entities"] = found
    built = message(
        chat_id, user_id, message_id, chat_type, date=date, sender=sender, reply_to=reply_to
    )
    return {"update_id": update_id, "message": {**built, **extra}}


def photo(
    update_id: int,
    chat_id: int,
    user_id: int,
    message_id: int,
    *,
    file_id: str = "AgACAgIAAxkBAAIBZ2Zphoto1280",
    caption: str | None = None,
    chat_type: str = "private",
    sizes: Sequence[tuple[int, int]] = PHOTO_SIZES,
    file_size: int = 187_044,
    date: int | None = None,
) -> JSON:
    """A photo in several sizes, smallest first; the largest has ``file_id`` and ``file_size``."""
    largest = len(sizes) - 1
    photos = [
        {
            "file_id": file_id if index == largest else f"{file_id}-s{index}",
            "file_unique_id": _unique_id("AQAD", f"{file_id}-{index}"),
            "file_size": file_size if index == largest else max(1, file_size * index // 20),
            "width": width,
            "height": height,
        }
        for index, (width, height) in enumerate(sizes)
    ]
    content: JSON = {"photo": photos, **_caption(caption)}
    built = message(chat_id, user_id, message_id, chat_type, date=date, **content)
    return {"update_id": update_id, "message": built}


def document(
    update_id: int,
    chat_id: int,
    user_id: int,
    message_id: int,
    *,
    file_id: str = "BQACAgIAAxkBAAIBaGZdocument",
    file_name: str = "report.pdf",
    mime_type: str = "application/pdf",
    file_size: int = 48_213,
    caption: str | None = None,
    chat_type: str = "private",
    date: int | None = None,
) -> JSON:
    described: JSON = {
        "file_name": file_name,
        "mime_type": mime_type,
        "file_id": file_id,
        "file_unique_id": _unique_id("AgAD", file_id),
        "file_size": file_size,
    }
    content: JSON = {"document": described, **_caption(caption)}
    built = message(chat_id, user_id, message_id, chat_type, date=date, **content)
    return {"update_id": update_id, "message": built}


def edited_message(
    update_id: int,
    chat_id: int,
    user_id: int,
    text: str,
    message_id: int,
    chat_type: str = "private",
    *,
    date: int,
    edit_date: int | None = None,
) -> JSON:
    """The new text of message ``message_id`` (sent at ``date``): same id, plus ``edit_date``."""
    edited = edit_date if edit_date is not None else date + 60
    if edited < date:
        raise ValueError("a message is edited after it was sent")
    built = message(chat_id, user_id, message_id, chat_type, date=date)
    built.update(_text_fields(text), edit_date=edited)
    return {"update_id": update_id, "edited_message": built}


def callback_query(
    update_id: int,
    chat_id: int,
    user_id: int,
    data: str,
    *,
    message_id: int = 1,
    query_id: str | None = None,
    bot: JSON | None = None,
    message: JSON | None = None,
    inline: bool = False,
    chat_type: str = "private",
) -> JSON:
    """A press of an inline button under the bot's message ``message_id`` (or of an
    inline-mode message when ``inline``: then there is no message and no chat)."""
    if len(data.encode()) > 64:
        raise ValueError("callback_data is 1-64 bytes")
    sender = user(user_id)
    query: JSON = {
        "id": query_id or str(4_382_000_000_000_000_000 + update_id),
        "from": sender,
        "chat_instance": str(-(3_000_000_000_000_000_000 + abs(chat_id))),
    }
    if inline:
        query["inline_message_id"] = f"AgAAA{update_id:010d}"
    else:
        query["message"] = message or _bot_message(
            chat_id, message_id, chat_type, sender, bot, data
        )
    query["data"] = data
    return {"update_id": update_id, "callback_query": query}


def group_mention(
    update_id: int,
    chat_id: int,
    user_id: int,
    message_id: int,
    *,
    bot_username: str = BOT_USERNAME,
    text: str | None = None,
    chat_type: str = "supergroup",
    date: int | None = None,
) -> JSON:
    """A group message that mentions the bot; ``text`` must contain ``@bot_username``."""
    written = text if text is not None else f"@{bot_username} what are your opening hours?"
    if f"@{bot_username}".lower() not in written.lower():
        raise ValueError(f"the text does not mention @{bot_username}")
    built = message(chat_id, user_id, message_id, chat_type, date=date)
    built.update(_text_fields(written))
    return {"update_id": update_id, "message": built}


def _unique_id(prefix: str, file_id: str) -> str:
    """A stable ``file_unique_id`` for a file id (Telegram's are short and never reused)."""
    return f"{prefix}{zlib.crc32(file_id.encode()):08x}"


def _text_fields(text: str) -> JSON:
    found = entities_of(text)
    return {"text": text, "entities": found} if found else {"text": text}


def _caption(caption: str | None) -> JSON:
    if caption is None:
        return {}
    if len(caption) > 1024:
        raise ValueError("a caption is 0-1024 characters")
    found = entities_of(caption)
    return {"caption": caption, "caption_entities": found} if found else {"caption": caption}


def _bot_message(
    chat_id: int, message_id: int, chat_type: str, sender: JSON, bot: JSON | None, data: str
) -> JSON:
    return {
        "message_id": message_id,
        "from": bot or bot_user(),
        "chat": chat(chat_id, chat_type, sender if chat_type == "private" else None),
        "date": int(time.time()) - 30,
        "text": "Did that answer your question?",
        "reply_markup": {"inline_keyboard": [[{"text": "Yes", "callback_data": data}]]},
    }
