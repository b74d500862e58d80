-- Laravel Sanctum's personal_access_tokens table, as its migration creates it on PostgreSQL.
-- Safe to run against a database that already has the table: nothing existing is altered.
CREATE TABLE IF NOT EXISTS "personal_access_tokens" (
    "id" bigserial NOT NULL PRIMARY KEY,
    "tokenable_type" varchar(255) NOT NULL,
    "tokenable_id" bigint NOT NULL,
    "name" text NOT NULL,
    "token" varchar(64) NOT NULL,
    "abilities" text NULL,
    "last_used_at" timestamp(0) without time zone NULL,
    "expires_at" timestamp(0) without time zone NULL,
    "created_at" timestamp(0) without time zone NULL,
    "updated_at" timestamp(0) without time zone NULL,
    CONSTRAINT "personal_access_tokens_token_unique" UNIQUE ("token")
);
CREATE INDEX IF NOT EXISTS "personal_access_tokens_tokenable_type_tokenable_id_index"
    ON "personal_access_tokens" ("tokenable_type", "tokenable_id");
