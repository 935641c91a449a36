ALTER TABLE `users` ADD `username_fold` text;--> statement-breakpoint
ALTER TABLE `users` ADD `username_skeleton` text;--> statement-breakpoint
CREATE INDEX `users_username_fold_idx` ON `users` (`username_fold`);--> statement-breakpoint
CREATE INDEX `users_username_skeleton_idx` ON `users` (`username_skeleton`);