-- The index on refresh_tokens.expires_at goes: it served only housekeeping, which now walks
-- token ids from the oldest (sessions repository, pruneExpired), and it cost every rotation a
-- page and a sixth of its database time. IF EXISTS: databases made between two commits of
-- main, when migration 0002 itself left the index out, never had it.
DROP INDEX IF EXISTS `refresh_tokens_expires_at_idx`;
