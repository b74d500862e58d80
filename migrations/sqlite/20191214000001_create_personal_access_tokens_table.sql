-- Laravel Sanctum's personal_access_tokens table, as its migration creates it on SQLite.
-- Safe to run against a database that already has the table: nothing existing is altered.
CREATE TABLE IF NOT EXISTS "personal_access_tokens" (
    "id" integer PRIMARY KEY AUTOINCREMENT NOT NULL,
    "tokenable_type" varchar NOT NULL,
    "tokenable_id" integer NOT NULL,
    "name" text NOT NULL,
    "token" varchar NOT NULL,
    "abilities" text,
    "last_used_at" datetime,
    "expires_at" datetime,
    "created_at" datetime,
    "updated_at" datetime
);
CREATE INDEX IF NOT EXISTS "personal_access_tokens_tokenable_type_tokenable_id_index"
    ON "personal_access_tokens" ("tokenable_type", "tokenable_id");
CREATE UNIQUE INDEX IF NOT EXISTS "personal_access_tokens_token_unique"
    ON "personal_access_tokens" ("token");
