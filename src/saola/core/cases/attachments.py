"""Attachments of cases: checked by their content (magic bytes) and size, stored once by SHA-256.

Files live under <data_dir>/files/<first two hex digits>/<sha256>; the name the uploader gave is kept in the
database only. The allowed kinds are PNG, JPEG, PDF, DOCX, XLSX and UTF-8 plain text; the file name's
extension must agree with the content, so a program renamed to .png is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from saola.core.auth.context import Actor
from saola.core.cases import service
from saola.core.cases.models import Case, CaseAttachment
from saola.core.errors import DomainError, FieldError, NotFound

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "application/pdf": (".pdf",),
    DOCX: (".docx",),
    XLSX: (".xlsx",),
    "text/plain": (".txt", ".csv", ".log", ".md"),
}
"""The allowed kinds of file and the extensions each may carry."""

_CHUNK = 1 << 16
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]+")
FILE_LOC: list[str | int] = ["body", "file"]


class AttachmentTooLarge(DomainError):
    """The file is over the configured size."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than {limit} bytes", 413, "attachment_too_large",
                         [FieldError(FILE_LOC, f"at most {limit} bytes")])


class AttachmentType(DomainError):
    """The file's content is not an allowed kind, or does not match its name."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 415, "attachment_type", [FieldError(FILE_LOC, message)])


def files_dir(data_dir: Path) -> Path:
    """Where attachments are kept."""
    return Path(data_dir) / "files"


def safe_filename(name: str | None) -> str:
    """The uploader's file name without folders or control characters, at most 255 characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")
    return (base or "file")[-255:]


def sniff(path: Path) -> str | None:
    """The allowed MIME type of a file by its content, or None when it is none of them."""
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError):
            return None
        if "[Content_Types].xml" in names and "word/document.xml" in names:
            return DOCX
        if "[Content_Types].xml" in names and "xl/workbook.xml" in names:
            return XLSX
        return None
    return "text/plain" if _is_text(path) else None


def _is_text(path: Path) -> bool:
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            if b"\x00" in chunk:
                return False
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return False
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def add_attachment(
    session: Session, *, actor: Actor, case_id: uuid.UUID, filename: str | None, stream: BinaryIO,
    data_dir: Path, max_bytes: int,
) -> CaseAttachment:
    """Check and store an uploaded file and attach it to a case; nothing is recorded when the file is refused."""
    case = service.case_for_write(session, actor=actor, case_id=case_id)
    name = safe_filename(filename)
    root = files_dir(data_dir)
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=root / "tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise AttachmentTooLarge(max_bytes)
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise AttachmentType("the file is empty")
        mime = sniff(tmp)
        if mime is None:
            raise AttachmentType("the file's content is not an allowed kind (PNG, JPEG, PDF, DOCX, XLSX, text)")
        extension = Path(name).suffix.lower()
        if extension not in EXTENSIONS[mime]:
            raise AttachmentType(f"the file's content is {mime} but its name ends in {extension or 'nothing'!r}; "
                                 f"expected {', '.join(EXTENSIONS[mime])}")
        sha = digest.hexdigest()
        relative = f"{sha[:2]}/{sha}"
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            tmp.unlink()
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    attachment = CaseAttachment(case_id=case.id, filename=name, mime=mime, size=size, sha256=sha,
                                storage_path=relative, uploaded_by=actor.name)
    session.add(attachment)
    session.flush()
    service.add_timeline(session, case, actor=actor, kind="attachment",
                         data={"attachment_id": str(attachment.id), "filename": name, "mime": mime, "size": size})
    service.publish(session, case, "attachment_added", attachment_id=str(attachment.id), filename=name,
                    mime=mime, size=size)
    return attachment


def _lineage(session: Session, case: Case) -> list[uuid.UUID]:
    # A task's recipients read the files of the directive (and tasks) above it, which lie outside their scope.
    ids = [case.id]
    parent_id = case.parent_case_id
    while parent_id is not None and len(ids) < 10:
        ids.append(parent_id)
        parent_id = session.scalar(select(Case.parent_case_id).where(Case.id == parent_id))
    return ids


def list_attachments(session: Session, *, actor: Actor, case_id: uuid.UUID) -> list[CaseAttachment]:
    """Files of a case, and of the directive it carries out (for a task)."""
    case = service.get_case(session, actor=actor, case_id=case_id)
    return list(session.scalars(select(CaseAttachment).where(CaseAttachment.case_id.in_(_lineage(session, case)))
                                .order_by(CaseAttachment.created_at)))


def open_attachment(
    session: Session, *, actor: Actor, case_id: uuid.UUID, attachment_id: uuid.UUID, data_dir: Path
) -> tuple[CaseAttachment, Path]:
    """An attachment the actor may download through this case, and where its bytes are."""
    case = service.get_case(session, actor=actor, case_id=case_id)
    attachment = session.get(CaseAttachment, attachment_id)
    if attachment is None or attachment.case_id not in _lineage(session, case):
        raise NotFound(f"attachment {attachment_id} not found")
    path = files_dir(data_dir) / attachment.storage_path
    if not path.is_file():
        raise NotFound(f"the file of attachment {attachment_id} is missing from storage")
    return attachment, path
