-- Refresh tokens of 43 characters from before selectors (rows marked legacy by 0002) are no
-- longer understood. A session whose current (unspent) token is one of them is ended here, with
-- the reason in revoked_reason and a session_revoked audit event; a session whose legacy token
-- was already rotated goes on with its selector token. The legacy rows themselves go: nothing
-- can present them any more. The next migration drops the column and its index.
INSERT INTO `audit_events` (`at`, `type`, `user_id`, `session_id`, `detail`)
SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER), 'session_revoked', `s`.`user_id`, `s`.`id`, '{"reason":"legacy_refresh_token","by":"migration"}'
FROM `sessions` `s`
WHERE `s`.`revoked_at` IS NULL AND `s`.`id` IN (SELECT `session_id` FROM `refresh_tokens` WHERE `legacy` = 1 AND `spent_at` IS NULL);
--> statement-breakpoint
UPDATE `sessions` SET `revoked_at` = CAST(unixepoch('subsec') * 1000 AS INTEGER), `revoked_reason` = 'legacy_refresh_token'
WHERE `revoked_at` IS NULL AND `id` IN (SELECT `session_id` FROM `refresh_tokens` WHERE `legacy` = 1 AND `spent_at` IS NULL);
--> statement-breakpoint
DELETE FROM `refresh_tokens` WHERE `legacy` = 1;
