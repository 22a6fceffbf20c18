"""The live stream: Server-Sent Events of committed changes, filtered by the user's scope and chosen topics."""
