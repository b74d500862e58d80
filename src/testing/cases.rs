//! The contract's cases: each an `async fn(store)` that panics when the store breaks its promise.

use super::*;

pub(super) async fn rotated_tokens_are_bounded_after_50_refreshes<St: TokenStore + Clone>(store: St) {
    rotated_tokens_are_bounded(store, 50).await;
}

pub(super) async fn thief_chains_of_1_8_40_and_300_exchanges_are_caught<St: TokenStore + Clone>(store: St) {
    for chain in [1, 8, 40, 300] {
        a_thief_chain_cannot_outrun_reuse_detection(store.clone(), chain).await;
    }
}

pub(super) async fn works_as_a_trait_object_case<St: TokenStore + Clone>(store: St) {
    works_as_a_trait_object(Arc::new(store) as Arc<dyn TokenStore>).await;
}

pub(super) async fn forced_interleavings_case<St: TokenStore + Clone>(store: St) {
    forced_interleavings_keep_exchanges_atomic(move || store.clone()).await;
}

pub(super) async fn racing_presentations_leak_nothing<St: TokenStore + Clone>(store: St) {
    let report = race_presentations(store, 20, 4).await;
    assert_eq!(report.leaks, 0, "{report}");
}

pub(super) async fn an_exchange_racing_a_logout_leaks_nothing<St: TokenStore + Clone>(store: St) {
    let report = race_exchange_and_logout(store, 20).await;
    assert_eq!(report.leaks, 0, "{report}");
}

pub(super) async fn inserting_exchanges_leak_nothing<St: TokenStore + Clone>(store: St) {
    let report = race_inserting_exchanges(store, 20).await;
    assert_eq!(report.leaks, 0, "{report}");
}

pub(super) async fn issued_tokens_are_found_with_their_fields<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let now = now_secs();
    let token = NewToken::access(user.clone())
        .name("laptop")
        .abilities(["posts:read", "posts/write"])
        .issued_at(now)
        .expires_in(Duration::from_secs(3600));
    let issued = store.issue(token).await.unwrap();
    let parsed = parse_token(issued.plain_text.expose().as_bytes()).unwrap();
    assert_eq!(parsed.id(), issued.record.id);
    let found = store.find(issued.record.id).await.unwrap().expect("an issued token is found");
    assert_eq!(found.id, issued.record.id);
    assert_eq!(found.session_id, issued.record.session_id, "find reports the session insert assigned");
    assert_eq!(found.user_id, user);
    assert_eq!(found.kind, TokenKind::Access);
    assert_eq!(found.name, "laptop");
    assert!(found.abilities.can("posts:read") && found.abilities.can("posts/write"));
    assert!(!found.abilities.can("admin"));
    assert!(found.digest.ct_eq(&TokenDigest::of(parsed.secret())));
    assert_eq!(found.created_at, now);
    assert_eq!(found.expires_at, Some(now + Duration::from_secs(3600)));
    assert_eq!(found.last_used_at, None);
    store.revoke_all_for_user(&user).await.unwrap();
}

pub(super) async fn only_the_digest_is_stored<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let issued = store.issue(NewToken::access(user.clone())).await.unwrap();
    let found = store.find(issued.record.id).await.unwrap().unwrap();
    let plain = issued.plain_text.expose();
    let secret = &plain[plain.find('|').unwrap() + 1..];
    assert!(!format!("{found:?}").contains(secret), "the secret leaked into the record");
    assert!(!found.digest.ct_eq(&TokenDigest::of(b"wrong secret")));
    store.revoke_all_for_user(&user).await.unwrap();
}

pub(super) async fn unknown_ids_are_absent<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    assert!(store.find(u64::MAX - 7).await.unwrap().is_none());
    assert!(store.find(0).await.unwrap().is_none());
    assert!(!store.revoke_session(&user, SessionId::new(u64::MAX - 7)).await.unwrap());
    assert!(store.list_sessions(&user).await.unwrap().is_empty());
    let tokens = RefreshTokens::new(store.clone());
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer 18446744073709551608|secret"));
    assert!(matches!(tokens.exchange(&headers).await, Err(RefreshError::Invalid)));
}

pub(super) async fn a_token_of_its_own_is_a_session<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let a = store.issue(NewToken::access(user.clone()).name("ci")).await.unwrap();
    let b = store.issue(NewToken::access(user.clone()).name("cron")).await.unwrap();
    assert_ne!(a.record.session_id, b.record.session_id, "each issued token is its own session");
    let sessions = store.list_sessions(&user).await.unwrap();
    assert_eq!(sessions.len(), 2);
    assert!(store.revoke_session(&user, a.record.session_id).await.unwrap());
    assert!(!store.revoke_session(&user, a.record.session_id).await.unwrap(), "revoking is idempotent");
    assert!(store.find(a.record.id).await.unwrap().is_none());
    assert!(works(&store, &b).await);
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 1, "the index no longer lists the revoked one");
}

pub(super) async fn revoke_all_removes_every_token_of_that_user_only<St: TokenStore + Clone>(store: St) {
    let (user, other) = (fresh_user(), fresh_user());
    let tokens = RefreshTokens::new(store.clone());
    let mut issued = Vec::new();
    for device in ["a", "b", "c"] {
        let pair = tokens.issue_pair(NewPair::new(user.clone()).name(device)).await.unwrap();
        issued.push(pair.access);
        issued.push(pair.refresh);
    }
    issued.push(store.issue(NewToken::refresh(user.clone())).await.unwrap());
    let kept = store.issue(NewToken::access(other.clone())).await.unwrap();
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 7);
    for token in &issued {
        assert!(store.find(token.record.id).await.unwrap().is_none(), "token {} survived logout", token.record.id);
    }
    assert!(works(&store, &kept).await, "another user's token was revoked");
    assert!(store.list_sessions(&user).await.unwrap().is_empty());
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 0, "logout is idempotent");
    store.revoke_all_for_user(&other).await.unwrap();
}

pub(super) async fn sessions_are_listed_once_each_newest_first<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let now = now_secs();
    let tokens = RefreshTokens::new(store.clone());
    let mut pairs = Vec::new();
    for (i, device) in ["laptop", "phone", "tablet"].into_iter().enumerate() {
        let clock = crate::clock::ManualClock::new(now + Duration::from_secs(i as u64));
        let at = RefreshTokens::new(store.clone()).clock(clock);
        pairs.push(at.issue_pair(NewPair::new(user.clone()).name(device).abilities(["posts:read"])).await.unwrap());
    }
    // Refreshing the laptop twice keeps it one session.
    let mut laptop = pairs[0].clone();
    for _ in 0..2 {
        laptop = tokens.exchange(&bearer(&laptop.refresh)).await.unwrap();
    }
    let sessions = store.list_sessions(&user).await.unwrap();
    let names: Vec<&str> = sessions.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["tablet", "phone", "laptop"], "one entry per session, newest first");
    let listed = &sessions[2];
    assert_eq!(listed.id, pairs[0].session_id());
    assert_eq!(listed.id, laptop.session_id(), "exchanges stay in their session");
    assert_eq!(listed.user_id, user);
    assert_eq!(listed.created_at, now, "a session's creation is its login, not its last exchange");
    assert!(listed.abilities.can("posts:read") && !listed.abilities.can("posts:write"));
    assert!(listed.expires_at.is_some_and(|at| at > now + Duration::from_secs(86400)), "the refresh token's expiry");
    assert!(!listed.is_expired(now));
    store.revoke_all_for_user(&user).await.unwrap();
}

pub(super) async fn a_session_of_another_user_is_never_touched<St: TokenStore + Clone>(store: St) {
    let (alice, bob) = (fresh_user(), fresh_user());
    let tokens = RefreshTokens::new(store.clone());
    let pair = tokens.issue_pair(NewPair::new(alice.clone())).await.unwrap();
    let bobs = tokens.issue_pair(NewPair::new(bob.clone())).await.unwrap();
    assert!(!store.revoke_session(&bob, pair.session_id()).await.unwrap(), "bob cannot revoke alice's session");
    assert_eq!(store.revoke_sessions(&bob, Sessions::Only(pair.session_id())).await.unwrap(), 0);
    assert!(works(&store, &pair.access).await && works(&store, &pair.refresh).await);
    assert!(works(&store, &bobs.access).await, "and his own sessions are not touched either");
    assert!(store.revoke_session(&alice, pair.session_id()).await.unwrap());
    assert!(!works(&store, &pair.access).await && !works(&store, &pair.refresh).await, "both tokens of the session");
    store.revoke_all_for_user(&bob).await.unwrap();
}

pub(super) async fn others_keeps_exactly_the_presenting_session<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone());
    let mut pairs = Vec::new();
    for _ in 0..3 {
        pairs.push(tokens.issue_pair(NewPair::new(user.clone())).await.unwrap());
    }
    let single = store.issue(NewToken::access(user.clone())).await.unwrap();
    let kept = pairs[1].session_id();
    assert_eq!(store.revoke_sessions(&user, Sessions::AllExcept(kept)).await.unwrap(), 5);
    assert!(works(&store, &pairs[1].access).await && works(&store, &pairs[1].refresh).await);
    for pair in [&pairs[0], &pairs[2]] {
        assert!(!pair_works(&store, pair).await, "another session survived \"others\"");
    }
    assert!(!works(&store, &single).await);
    let sessions = store.list_sessions(&user).await.unwrap();
    assert_eq!(sessions.iter().map(|s| s.id).collect::<Vec<_>>(), [kept]);
    store.revoke_all_for_user(&user).await.unwrap();
}

pub(super) async fn an_exchange_replaces_the_pair_in_the_same_session<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone());
    let first = tokens.issue_pair(NewPair::new(user.clone()).name("phone").abilities(["posts:read"])).await.unwrap();
    let second = tokens.exchange(&bearer(&first.refresh)).await.unwrap();
    assert_eq!(second.session_id(), first.session_id());
    assert!(works(&store, &second.access).await && works(&store, &second.refresh).await, "the new pair works");
    assert!(!works(&store, &first.access).await, "the session's previous access token stops working");
    assert!(!works(&store, &first.refresh).await, "the exchanged refresh token stops working");
    let found = store.find(second.access.record.id).await.unwrap().unwrap();
    assert_eq!(found.session_id, first.session_id());
    assert_eq!(found.kind, TokenKind::Access);
    assert_eq!(found.name, "phone");
    assert!(found.abilities.can("posts:read") && !found.abilities.can("admin"), "the session keeps its abilities");
    assert_eq!(store.list_sessions(&user).await.unwrap().len(), 1);
    // A refresh token issued on its own exchanges too, into a session of two.
    let lone = store.issue(NewToken::refresh(user.clone()).abilities(["a"])).await.unwrap();
    let minted = tokens.exchange(&bearer(&lone)).await.unwrap();
    assert_eq!(minted.session_id(), lone.record.session_id);
    assert!(works(&store, &minted.access).await);
    assert_eq!(store.find(minted.access.record.id).await.unwrap().unwrap().abilities, ["a"].into_iter().collect());
    store.revoke_all_for_user(&user).await.unwrap();
}

pub(super) async fn reuse_revokes_the_session_and_spares_the_others<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone());
    let stolen = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    let other = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    let thief = tokens.exchange(&bearer(&stolen.refresh)).await.unwrap();
    match tokens.exchange(&bearer(&stolen.refresh)).await {
        Err(RefreshError::Reused { user_id, session_id, revoked }) => {
            assert_eq!(user_id, user);
            assert_eq!(session_id, stolen.session_id());
            assert_eq!(revoked, 2, "the session's live access and refresh token");
        }
        other => panic!("presenting an exchanged refresh token must be reuse, got {other:?}"),
    }
    assert!(!pair_works(&store, &thief).await, "the pair minted from the stolen token survived reuse detection");
    assert!(works(&store, &other.access).await && works(&store, &other.refresh).await, "other devices survive");
    assert!(matches!(tokens.exchange(&bearer(&thief.refresh)).await, Err(RefreshError::Invalid)));
    store.revoke_all_for_user(&user).await.unwrap();
}

pub(super) async fn reuse_can_revoke_every_session<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone()).on_reuse(OnReuse::RevokeAllSessions);
    let stolen = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    let other = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    tokens.exchange(&bearer(&stolen.refresh)).await.unwrap();
    let err = tokens.exchange(&bearer(&stolen.refresh)).await.unwrap_err();
    assert!(matches!(err, RefreshError::Reused { revoked: 4, .. }), "{err:?}");
    assert!(!pair_works(&store, &other).await);
    assert!(store.list_sessions(&user).await.unwrap().is_empty());
}

pub(super) async fn bad_presentations_revoke_nothing<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone());
    let pair = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    assert!(matches!(tokens.exchange(&bearer(&pair.access)).await, Err(RefreshError::Invalid)), "access tokens");
    let mut forged = HeaderMap::new();
    let value = format!("Bearer {}|wrong-secret", pair.refresh.record.id);
    forged.insert(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
    assert!(matches!(tokens.exchange(&forged).await, Err(RefreshError::Invalid)), "a wrong secret");
    assert!(works(&store, &pair.access).await && works(&store, &pair.refresh).await, "nothing was revoked");
    let expired = store
        .issue(
            NewToken::refresh(user.clone())
                .issued_at(now_secs() - Duration::from_secs(20))
                .expires_in(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert!(matches!(tokens.exchange(&bearer(&expired)).await, Err(RefreshError::Invalid)), "an expired refresh token");
    store.revoke_all_for_user(&user).await.unwrap();
}

pub(super) async fn the_reuse_interval_lets_a_retry_through<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone()).reuse_interval(Duration::from_secs(60));
    let first = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    let lost = tokens.exchange(&bearer(&first.refresh)).await.unwrap();
    let retried = tokens.exchange(&bearer(&first.refresh)).await.expect("a retry within the interval is no reuse");
    assert_eq!(retried.session_id(), first.session_id());
    assert!(works(&store, &retried.access).await && works(&store, &retried.refresh).await);
    assert!(!works(&store, &lost.access).await, "the retry's pair replaced the lost one");
    let strict = RefreshTokens::new(store.clone());
    assert!(matches!(strict.exchange(&bearer(&first.refresh)).await, Err(RefreshError::Reused { .. })));
}

/// `refreshes` exchanges of one session leave one session, and every refresh token it ever exchanged,
/// the first included, is still recognised as reuse: nothing is forgotten, however many exchanges.
pub async fn rotated_tokens_are_bounded<St: TokenStore + Clone>(store: St, refreshes: usize) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone()).keep_rotated(3);
    let first = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    let mut last = first.clone();
    for _ in 0..refreshes {
        last = tokens.exchange(&bearer(&last.refresh)).await.unwrap();
    }
    assert_eq!(store.list_sessions(&user).await.unwrap().len(), 1, "{refreshes} refreshes are still one session");
    assert!(
        matches!(tokens.exchange(&bearer(&first.refresh)).await, Err(RefreshError::Reused { .. })),
        "the first refresh token of a session is reuse after {refreshes} exchanges"
    );
    assert!(!pair_works(&store, &last).await && store.list_sessions(&user).await.unwrap().is_empty());
}

/// The thief-chain attack: a thief holding a copy of a device's refresh token exchanges it, then its
/// own tokens `chain - 1` more times at once; the device then presents the token it holds. That must
/// be detected as reuse (whatever `chain` is), revoke the session, and leave no token of the thief's
/// chain working, while the user's other device keeps working.
pub async fn a_thief_chain_cannot_outrun_reuse_detection<St: TokenStore + Clone>(store: St, chain: usize) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone());
    let victim = tokens.issue_pair(NewPair::new(user.clone()).name("victim")).await.unwrap();
    let other = tokens.issue_pair(NewPair::new(user.clone()).name("other device")).await.unwrap();
    let mut stolen = vec![tokens.exchange(&bearer(&victim.refresh)).await.unwrap()];
    for _ in 1..chain {
        let next = tokens.exchange(&bearer(&stolen.last().unwrap().refresh)).await.unwrap();
        stolen.push(next);
    }
    let outcome = tokens.exchange(&bearer(&victim.refresh)).await;
    assert!(
        matches!(outcome, Err(RefreshError::Reused { .. })),
        "after a thief chain of {chain} exchanges the victim's token must be reuse, got {outcome:?}"
    );
    for pair in &stolen {
        assert!(!pair_works(&store, pair).await, "a token of the thief's chain of {chain} still works");
    }
    let thief = tokens.exchange(&bearer(&stolen.last().unwrap().refresh)).await;
    assert!(thief.is_err(), "the thief's newest refresh token still exchanges after a chain of {chain}");
    assert!(works(&store, &other.access).await && works(&store, &other.refresh).await, "the other device");
    store.revoke_all_for_user(&user).await.unwrap();
}

/// Forged secrets for real ids revoke nothing and answer invalid: a random secret of the refresh
/// token's own shape (a family key nobody issued), a bare secret, another session's family key (a
/// user presenting their own phone's key with the laptop's id), and forged or real secrets sent with an
/// access token's id.
pub async fn forged_refresh_tokens_revoke_nothing<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone());
    let laptop = tokens.issue_pair(NewPair::new(user.clone()).name("laptop")).await.unwrap();
    let phone = tokens.issue_pair(NewPair::new(user.clone()).name("phone")).await.unwrap();
    // Exchanged once, so a token of its family that is not the current one would be reuse.
    let laptop = tokens.exchange(&bearer(&laptop.refresh)).await.unwrap();
    let header = |id: TokenId, secret: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {id}|{secret}")).unwrap());
        headers
    };
    let shaped = |key: &str| format!("{}.{key}", crate::token::generate_secret("").unwrap().as_str());
    let random_key = crate::family::new_family_key().unwrap();
    let phone_secret = phone.refresh.plain_text.expose().split_once('|').unwrap().1.to_owned();
    let phone_key = crate::family::family_key(phone_secret.as_bytes()).expect("issued refresh tokens carry a key");
    let refresh_id = laptop.refresh.record.id;
    let access_id = laptop.access.record.id;
    let forgeries = [
        ("a random key in the refresh token's shape", header(refresh_id, &shaped(&random_key))),
        ("a bare secret", header(refresh_id, crate::token::generate_secret("").unwrap().as_str())),
        ("another session's family key", header(refresh_id, &shaped(phone_key))),
        ("another session's whole secret", header(refresh_id, &phone_secret)),
        ("an access id with a shaped secret", header(access_id, &shaped(&random_key))),
        ("an access id with another session's key", header(access_id, &shaped(phone_key))),
        ("an access token presented as a refresh token", bearer(&laptop.access)),
    ];
    for (what, forged) in &forgeries {
        let outcome = tokens.exchange(forged).await;
        assert!(matches!(outcome, Err(RefreshError::Invalid)), "{what}: must be invalid, got {outcome:?}");
        for pair in [&laptop, &phone] {
            assert!(works(&store, &pair.access).await && works(&store, &pair.refresh).await, "{what} revoked a token");
        }
    }
    assert_eq!(store.list_sessions(&user).await.unwrap().len(), 2, "forgeries revoke no session");
    store.revoke_all_for_user(&user).await.unwrap();
}

pub(super) async fn the_session_limit_revokes_the_oldest_or_refuses<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let now = now_secs();
    let limit = SessionLimit::new(3, WhenFull::RevokeOldest);
    let mut issued = Vec::new();
    for i in 0..5u64 {
        let clock = crate::clock::ManualClock::new(now + Duration::from_secs(i));
        let tokens = RefreshTokens::new(store.clone()).clock(clock).session_limit(limit);
        issued.push(tokens.issue_pair(NewPair::new(user.clone())).await.unwrap());
    }
    assert!(!pair_works(&store, &issued[0]).await && !pair_works(&store, &issued[1]).await, "the oldest went");
    for pair in &issued[2..] {
        assert!(works(&store, &pair.access).await);
    }
    assert_eq!(store.list_sessions(&user).await.unwrap().len(), 3);
    let refuse = NewToken::access(user.clone()).session_limit(SessionLimit::new(3, WhenFull::Refuse));
    let err = store.issue(refuse).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::SessionLimit, "{err}");
    assert_eq!(store.list_sessions(&user).await.unwrap().len(), 3, "a refused session stores nothing");
    store.revoke_all_for_user(&user).await.unwrap();
}

pub(super) async fn prune_removes_expired_tokens_only<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let now = now_secs();
    let hour = Duration::from_secs(3600);
    let expired = store.issue(NewToken::access(user.clone()).issued_at(now - 2 * hour).expires_at(now - hour)).await;
    let expired = expired.unwrap();
    let live = store.issue(NewToken::access(user.clone()).issued_at(now).expires_at(now + hour)).await.unwrap();
    // A session whose access token expired but whose refresh token lives on.
    let clock = crate::clock::ManualClock::new(now - 2 * hour);
    let tokens = RefreshTokens::new(store.clone()).clock(clock).access_ttl(hour);
    let pair = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    // Stores with native expiry (Redis) may have dropped expired tokens already: only absence is checked.
    store.prune_expired(now, None).await.unwrap();
    assert!(store.find(expired.record.id).await.unwrap().is_none());
    assert!(!works(&store, &pair.access).await);
    assert!(works(&store, &live).await);
    assert!(works(&store, &pair.refresh).await, "the refresh token outlives its expired access token");
    let refreshed = RefreshTokens::new(store.clone()).exchange(&bearer(&pair.refresh)).await.unwrap();
    assert!(works(&store, &refreshed.access).await, "and still mints a pair");
    let sessions = store.list_sessions(&user).await.unwrap();
    assert_eq!(sessions.len(), 2, "the fully expired session is gone: {sessions:?}");
    let pruned = store.prune_expired(now - Duration::from_secs(86400), Some(now + hour)).await.unwrap();
    assert!(pruned >= 2, "created_before prunes by age");
    assert!(!works(&store, &live).await);
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 0, "pruned tokens left the user index");
}

pub(super) async fn concurrent_logins_and_logouts_leave_no_unindexed_token<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        let user = user.clone();
        tasks.push(tokio::spawn(async move {
            let tokens = RefreshTokens::new(store.clone());
            let mut issued = Vec::new();
            for _ in 0..20 {
                if i % 2 == 0 {
                    issued.push(tokens.issue_pair(NewPair::new(user.clone())).await.unwrap());
                } else {
                    store.revoke_all_for_user(&user).await.unwrap();
                }
            }
            issued
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    store.revoke_all_for_user(&user).await.unwrap();
    for pair in &all {
        assert!(!pair_works(&store, pair).await, "a token of session {} escaped the user index", pair.session_id());
    }
}

pub(super) async fn works_as_a_trait_object(store: Arc<dyn TokenStore>) {
    let user = fresh_user();
    let issued = store.issue(NewToken::access(user.clone())).await.unwrap();
    assert!(works(&store, &issued).await);
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 1);
}
