-- Refresh tokens found by id (selector) instead of by digest: the unique index on the digest,
-- the index on session_id and its foreign key go (db/schema.ts says why). Rows from before are
-- marked legacy and keep a partial unique index on the digest, so their tokens still rotate.
PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_refresh_tokens` (
	`id` integer PRIMARY KEY NOT NULL,
	`token_hash` blob NOT NULL,
	`session_id` text NOT NULL,
	`parent_id` integer,
	`successor_id` integer,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`spent_at` integer,
	`legacy` integer DEFAULT false NOT NULL
);
--> statement-breakpoint
INSERT INTO `__new_refresh_tokens`("id", "token_hash", "session_id", "parent_id", "successor_id", "created_at", "expires_at", "spent_at", "legacy") SELECT "id", "token_hash", "session_id", "parent_id", "successor_id", "created_at", "expires_at", "spent_at", 1 FROM `refresh_tokens`;--> statement-breakpoint
DROP TABLE `refresh_tokens`;--> statement-breakpoint
ALTER TABLE `__new_refresh_tokens` RENAME TO `refresh_tokens`;--> statement-breakpoint
PRAGMA foreign_keys=ON;--> statement-breakpoint
CREATE INDEX `refresh_tokens_expires_at_idx` ON `refresh_tokens` (`expires_at`);--> statement-breakpoint
CREATE UNIQUE INDEX `refresh_tokens_legacy_token_hash_unique` ON `refresh_tokens` (`token_hash`) WHERE legacy = 1;