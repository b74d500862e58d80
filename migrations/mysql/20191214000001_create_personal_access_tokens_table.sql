-- Laravel Sanctum's personal_access_tokens table, as its migration creates it on MySQL and MariaDB.
-- Safe to run against a database that already has the table: nothing existing is altered.
CREATE TABLE IF NOT EXISTS `personal_access_tokens` (
    `id` bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
    `tokenable_type` varchar(255) NOT NULL,
    `tokenable_id` bigint unsigned NOT NULL,
    `name` text NOT NULL,
    `token` varchar(64) NOT NULL,
    `abilities` text NULL,
    `last_used_at` timestamp NULL,
    `expires_at` timestamp NULL,
    `created_at` timestamp NULL,
    `updated_at` timestamp NULL,
    INDEX `personal_access_tokens_tokenable_type_tokenable_id_index` (`tokenable_type`, `tokenable_id`),
    UNIQUE KEY `personal_access_tokens_token_unique` (`token`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
