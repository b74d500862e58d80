//! The contract every `TokenStore` implementation must satisfy. Each store's test file runs
//! `store_contract(store)` against a real, empty store (MemoryStore, Redis, PostgreSQL, MariaDB, SQLite).
//!
//! User ids are random per run so suites can share a real backend and run in parallel.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tower_token_auth::token::{parse_token, TokenDigest};
use tower_token_auth::{NewToken, TokenKind, TokenStore, TokenStoreExt, UserId};

/// A user id no other test run uses.
pub fn fresh_user() -> UserId {
    let n: u64 = (SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64 & 0xffff_ffff)
        ^ u64::from(std::process::id()) << 32
        ^ NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 40;
    UserId::from(n % 1_000_000_000_000)
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Whole seconds since the epoch: SQL stores keep second precision, as Laravel does.
pub fn now_secs() -> SystemTime {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// Runs every contract check against `store`.
pub async fn store_contract<St: TokenStore + Clone>(store: St) {
    issued_token_is_found_with_its_fields(&store).await;
    only_the_digest_is_stored(&store).await;
    unknown_id_is_none(&store).await;
    revoke_removes_one_token(&store).await;
    revoke_all_removes_access_and_refresh_tokens_of_that_user_only(&store).await;
    refresh_rotation_is_single_use(&store).await;
    prune_removes_expired_tokens_only(&store).await;
    concurrent_issue_and_revoke_all_leave_no_unindexed_token(&store).await;
    works_as_a_trait_object(Arc::new(store.clone()) as Arc<dyn TokenStore>).await;
}

async fn issued_token_is_found_with_its_fields<St: TokenStore>(store: &St) {
    let user = fresh_user();
    let now = now_secs();
    let issued = store
        .issue(
            NewToken::access(user.clone())
                .name("laptop")
                .abilities(["posts:read", "posts/write"])
                .issued_at(now)
                .expires_in(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let parsed = parse_token(issued.plain_text.expose().as_bytes()).unwrap();
    assert_eq!(parsed.id(), issued.record.id);
    let found = store.find(issued.record.id).await.unwrap().expect("issued token is found");
    assert_eq!(found.id, issued.record.id);
    assert_eq!(found.user_id, user);
    assert_eq!(found.kind, TokenKind::Access);
    assert_eq!(found.name, "laptop");
    assert!(found.abilities.can("posts:read") && found.abilities.can("posts/write"));
    assert!(!found.abilities.can("admin"));
    assert!(found.digest.ct_eq(&TokenDigest::of(parsed.secret())));
    assert_eq!(found.created_at, now);
    assert_eq!(found.expires_at, Some(now + Duration::from_secs(3600)));
    store.revoke_all_for_user(&user).await.unwrap();
}

async fn only_the_digest_is_stored<St: TokenStore>(store: &St) {
    let user = fresh_user();
    let issued = store.issue(NewToken::access(user.clone())).await.unwrap();
    let found = store.find(issued.record.id).await.unwrap().unwrap();
    let secret = &issued.plain_text.expose()[issued.plain_text.expose().find('|').unwrap() + 1..];
    assert!(!format!("{found:?}").contains(secret), "secret leaked into the record");
    assert!(!found.digest.ct_eq(&TokenDigest::of(b"wrong secret")));
    store.revoke_all_for_user(&user).await.unwrap();
}

async fn unknown_id_is_none<St: TokenStore>(store: &St) {
    assert!(store.find(u64::MAX - 7).await.unwrap().is_none());
    assert!(!store.revoke(u64::MAX - 7).await.unwrap());
    assert!(!store.mark_refresh_rotated(u64::MAX - 7).await.unwrap());
}

async fn revoke_removes_one_token<St: TokenStore>(store: &St) {
    let user = fresh_user();
    let a = store.issue(NewToken::access(user.clone())).await.unwrap();
    let b = store.issue(NewToken::access(user.clone())).await.unwrap();
    assert!(store.revoke(a.record.id).await.unwrap());
    assert!(!store.revoke(a.record.id).await.unwrap(), "revoke is idempotent");
    assert!(store.find(a.record.id).await.unwrap().is_none());
    assert!(store.find(b.record.id).await.unwrap().is_some());
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 1, "the index no longer lists the revoked token");
}

async fn revoke_all_removes_access_and_refresh_tokens_of_that_user_only<St: TokenStore>(store: &St) {
    let user = fresh_user();
    let other = fresh_user();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(store.issue(NewToken::access(user.clone())).await.unwrap().record.id);
        ids.push(store.issue(NewToken::refresh(user.clone())).await.unwrap().record.id);
    }
    let kept = store.issue(NewToken::access(other.clone())).await.unwrap().record.id;
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 6);
    for id in ids {
        assert!(store.find(id).await.unwrap().is_none(), "token {id} survived logout");
    }
    assert!(store.find(kept).await.unwrap().is_some(), "another user's token was revoked");
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 0, "logout is idempotent");
    store.revoke_all_for_user(&other).await.unwrap();
}

async fn refresh_rotation_is_single_use<St: TokenStore>(store: &St) {
    let user = fresh_user();
    let refresh = store.issue(NewToken::refresh(user.clone())).await.unwrap();
    let access = store.issue(NewToken::access(user.clone())).await.unwrap();
    assert_eq!(store.find(refresh.record.id).await.unwrap().unwrap().kind, TokenKind::Refresh);
    assert!(store.mark_refresh_rotated(refresh.record.id).await.unwrap());
    assert!(!store.mark_refresh_rotated(refresh.record.id).await.unwrap(), "a refresh token rotates once");
    assert!(!store.mark_refresh_rotated(access.record.id).await.unwrap(), "access tokens do not rotate");
    let rotated = store.find(refresh.record.id).await.unwrap().unwrap();
    assert_eq!(rotated.kind, TokenKind::RotatedRefresh);
    assert_eq!(store.find(access.record.id).await.unwrap().unwrap().kind, TokenKind::Access);
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 2, "rotated tokens are revoked too");
}

async fn prune_removes_expired_tokens_only<St: TokenStore>(store: &St) {
    let user = fresh_user();
    let now = now_secs();
    let expired = store
        .issue(
            NewToken::access(user.clone())
                .issued_at(now - Duration::from_secs(7200))
                .expires_at(now - Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let live = store
        .issue(NewToken::access(user.clone()).issued_at(now).expires_at(now + Duration::from_secs(3600)))
        .await
        .unwrap();
    // Stores with native TTLs (Redis) may have dropped the expired token before prune runs, so only
    // its absence is asserted, not the count.
    store.prune_expired(now, None).await.unwrap();
    assert!(store.find(expired.record.id).await.unwrap().is_none());
    assert!(store.find(live.record.id).await.unwrap().is_some());
    let pruned =
        store.prune_expired(now - Duration::from_secs(86400), Some(now + Duration::from_secs(1))).await.unwrap();
    assert!(pruned >= 1, "created_before prunes by age");
    assert!(store.find(live.record.id).await.unwrap().is_none());
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 0, "pruned tokens left the user index");
}

async fn concurrent_issue_and_revoke_all_leave_no_unindexed_token<St: TokenStore + Clone>(store: &St) {
    let user = fresh_user();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        let user = user.clone();
        tasks.push(tokio::spawn(async move {
            let mut issued = Vec::new();
            for _ in 0..20 {
                if i % 2 == 0 {
                    issued.push(store.issue(NewToken::access(user.clone())).await.unwrap().record.id);
                } else {
                    store.revoke_all_for_user(&user).await.unwrap();
                }
            }
            issued
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    store.revoke_all_for_user(&user).await.unwrap();
    for id in all {
        assert!(store.find(id).await.unwrap().is_none(), "token {id} escaped the user index");
    }
}

async fn works_as_a_trait_object(store: Arc<dyn TokenStore>) {
    let user = fresh_user();
    let issued = store.issue(NewToken::access(user.clone())).await.unwrap();
    assert!(store.find(issued.record.id).await.unwrap().is_some());
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 1);
}
