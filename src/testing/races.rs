//! Concurrency checks: interleavings forced with a [`GatedStore`], randomized races, and the thief-chain attack, each with a report.

use super::*;

/// The interleavings that broke the two-step exchange, forced with a [`GatedStore`]: a second
/// presentation, or a logout, runs while an exchange is held before its store operation and after it.
/// In every order: at most one presentation wins, and once reuse is detected or the logout has
/// returned, no token of the session works.
pub async fn forced_interleavings_keep_exchanges_atomic<St, F>(make: F)
where
    St: TokenStore + Clone,
    F: Fn() -> St,
{
    for when in [When::Before, When::After] {
        // (a) reuse detected while an exchange of the same token is in flight.
        let store = GatedStore::new(make());
        let user = fresh_user();
        let tokens = RefreshTokens::new(store.clone());
        let pair = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
        let mut gate = store.gate_next(Op::Exchange, when);
        let held = {
            let (tokens, headers) = (tokens.clone(), bearer(&pair.refresh));
            tokio::spawn(async move { tokens.exchange(&headers).await })
        };
        gate.reached().await;
        let second = tokens.exchange(&bearer(&pair.refresh)).await;
        gate.open();
        let first = held.await.expect("the held exchange does not panic");
        let results = [&first, &second];
        let winners: Vec<&TokenPair> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        let reused = results.iter().filter(|r| matches!(r, Err(RefreshError::Reused { .. }))).count();
        assert_eq!(winners.len(), 1, "{when:?}: exactly one presentation wins: {first:?} / {second:?}");
        assert_eq!(reused, 1, "{when:?}: the other one is reuse: {first:?} / {second:?}");
        for pair in winners {
            assert!(!pair_works(&store, pair).await, "{when:?}: a pair survived reuse detection");
        }
        assert!(!pair_works(&store, &pair).await);
        assert!(store.list_sessions(&user).await.unwrap().is_empty(), "{when:?}: the session is revoked");

        // (b) an exchange racing log out everywhere.
        let user = fresh_user();
        let pair = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
        let mut gate = store.gate_next(Op::Exchange, when);
        let held = {
            let (tokens, headers) = (tokens.clone(), bearer(&pair.refresh));
            tokio::spawn(async move { tokens.exchange(&headers).await })
        };
        gate.reached().await;
        store.revoke_all_for_user(&user).await.unwrap();
        gate.open();
        match held.await.expect("the held exchange does not panic") {
            Ok(minted) => assert!(!pair_works(&store, &minted).await, "{when:?}: a pair outlived the logout"),
            Err(RefreshError::Invalid) => {}
            Err(other) => panic!("{when:?}: an exchange after a logout is invalid, got {other:?}"),
        }
        assert!(!pair_works(&store, &pair).await);
        assert!(store.list_sessions(&user).await.unwrap().is_empty(), "{when:?}: nothing of the user is left");
    }
}

/// Figures from a randomized race check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaceReport {
    /// Rounds run.
    pub rounds: usize,
    /// Rounds in which a token that must be dead still worked afterwards (must be 0).
    pub leaks: usize,
    /// Exchanges that succeeded.
    pub exchanges: usize,
    /// Presentations answered as reuse.
    pub reuses: usize,
}

impl fmt::Display for RaceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rounds, {} leaks, {} exchanges, {} reuses detected",
            self.rounds, self.leaks, self.exchanges, self.reuses
        )
    }
}

/// `presentations` exchanges of `pair`'s refresh token started at once: the pairs they minted and how
/// many were answered as reuse. Panics on any answer but a pair, reuse or invalid.
pub(super) async fn present_at_once<St: TokenStore + Clone>(
    tokens: &RefreshTokens<St>,
    pair: &TokenPair,
    presentations: usize,
) -> (Vec<TokenPair>, usize) {
    let barrier = Arc::new(Barrier::new(presentations));
    let tasks: Vec<_> = (0..presentations)
        .map(|_| {
            let (tokens, headers, barrier) = (tokens.clone(), bearer(&pair.refresh), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                tokens.exchange(&headers).await
            })
        })
        .collect();
    let (mut winners, mut reused) = (Vec::new(), 0);
    for task in tasks {
        match task.await.expect("an exchange task does not panic") {
            Ok(minted) => winners.push(minted),
            Err(RefreshError::Reused { .. }) => reused += 1,
            Err(RefreshError::Invalid) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    (winners, reused)
}

/// An exchange of `pair`'s refresh token and a logout everywhere of `user`, started at once; returns
/// the pair the exchange minted, if it did, once both are done.
pub(super) async fn exchange_against_logout<St: TokenStore + Clone>(
    store: &St,
    tokens: &RefreshTokens<St>,
    pair: &TokenPair,
    user: &UserId,
) -> Option<TokenPair> {
    let barrier = Arc::new(Barrier::new(2));
    let exchange = {
        let (tokens, headers, barrier) = (tokens.clone(), bearer(&pair.refresh), Arc::clone(&barrier));
        tokio::spawn(async move {
            barrier.wait().await;
            tokens.exchange(&headers).await
        })
    };
    let logout = {
        let (store, user, barrier) = (store.clone(), user.clone(), Arc::clone(&barrier));
        tokio::spawn(async move {
            barrier.wait().await;
            store.revoke_all_for_user(&user).await
        })
    };
    logout.await.expect("the logout task does not panic").expect("logout succeeds");
    exchange.await.expect("the exchange task does not panic").ok()
}

/// `presentations` simultaneous exchanges of one refresh token, `rounds` times: each round exactly one
/// wins, and since the others are reuse, no pair of the round works afterwards. Panics on a second
/// winner; counts leaks.
pub async fn race_presentations<St: TokenStore + Clone>(store: St, rounds: usize, presentations: usize) -> RaceReport {
    let tokens = RefreshTokens::new(store.clone());
    let mut report = RaceReport { rounds, ..RaceReport::default() };
    for round in 0..rounds {
        let user = fresh_user();
        let pair = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
        let (winners, reused) = present_at_once(&tokens, &pair, presentations).await;
        assert!(winners.len() <= 1, "round {round}: {} presentations of one refresh token won", winners.len());
        report.exchanges += winners.len();
        report.reuses += reused;
        if presentations > 1 {
            assert_eq!(winners.len(), 1, "round {round}: the first presentation must win");
            assert!(reused >= 1, "round {round}: a second presentation must be reuse");
            let mut leaked = pair_works(&store, &pair).await;
            for minted in &winners {
                leaked |= pair_works(&store, minted).await;
            }
            report.leaks += usize::from(leaked);
        }
        store.revoke_all_for_user(&user).await.unwrap();
    }
    report
}

/// An exchange and a logout everywhere of the same user at once, `rounds` times: once the logout has
/// returned, no token of the user works, whatever the exchange answered. Counts leaks.
pub async fn race_exchange_and_logout<St: TokenStore + Clone>(store: St, rounds: usize) -> RaceReport {
    let tokens = RefreshTokens::new(store.clone());
    let mut report = RaceReport { rounds, ..RaceReport::default() };
    for _ in 0..rounds {
        let user = fresh_user();
        let pair = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
        let minted = exchange_against_logout(&store, &tokens, &pair, &user).await;
        let mut leaked = pair_works(&store, &pair).await;
        if let Some(minted) = &minted {
            report.exchanges += 1;
            leaked |= pair_works(&store, minted).await;
        }
        report.leaks += usize::from(leaked);
        store.revoke_all_for_user(&user).await.unwrap();
    }
    report
}

/// Like [`race_exchange_and_logout`] and [`race_presentations`], on sessions whose access token was
/// pruned, so that the exchange has to **create** one rather than replace it in place: on PostgreSQL a
/// logout whose snapshot predates a concurrent insert cannot see the inserted row, which the other races
/// never exercise. Each round races one exchange against a logout, then two presentations against each
/// other; counts leaks. It prunes: run it on a store (table, key prefix) of its own.
pub async fn race_inserting_exchanges<St: TokenStore + Clone>(store: St, rounds: usize) -> RaceReport {
    let mut report = RaceReport { rounds, ..RaceReport::default() };
    let now = now_secs();
    let hour = Duration::from_secs(3600);
    let past = RefreshTokens::new(store.clone())
        .clock(crate::clock::ManualClock::new(now - 2 * hour))
        .access_ttl(Duration::from_secs(60));
    let tokens = RefreshTokens::new(store.clone());
    for round in 0..rounds {
        // An exchange that inserts, racing log out everywhere.
        let user = fresh_user();
        let pair = past.issue_pair(NewPair::new(user.clone())).await.unwrap();
        let other = past.issue_pair(NewPair::new(user.clone())).await.unwrap();
        store.prune_expired(now, None).await.unwrap();
        assert!(!works(&store, &pair.access).await, "round {round}: the access token was pruned");
        assert!(works(&store, &pair.refresh).await, "round {round}: the refresh token lives on");
        let minted = exchange_against_logout(&store, &tokens, &pair, &user).await;
        let mut leaked = pair_works(&store, &pair).await || pair_works(&store, &other).await;
        if let Some(minted) = &minted {
            report.exchanges += 1;
            leaked |= pair_works(&store, minted).await;
        }

        // Two inserting presentations of one token: one wins, the other is reuse, nothing survives.
        let user = fresh_user();
        let pair = past.issue_pair(NewPair::new(user.clone())).await.unwrap();
        store.prune_expired(now, None).await.unwrap();
        let (winners, reused) = present_at_once(&tokens, &pair, 2).await;
        assert_eq!(winners.len(), 1, "round {round}: one of two inserting presentations wins");
        for minted in &winners {
            leaked |= pair_works(&store, minted).await;
        }
        report.exchanges += winners.len();
        report.reuses += reused;
        report.leaks += usize::from(leaked);
        store.revoke_all_for_user(&user).await.unwrap();
    }
    report
}

/// What [`thief_chains`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThiefChainReport {
    /// Rounds run.
    pub rounds: usize,
    /// Exchanges in each thief chain.
    pub chain: usize,
    /// Rounds in which the victim's presentation was not detected as reuse (must be 0).
    pub evasions: usize,
    /// Rounds in which a token of the thief's chain still worked afterwards (must be 0).
    pub survivors: usize,
}

impl fmt::Display for ThiefChainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rounds of a {}-exchange thief chain: {} evasions, {} rounds with a surviving thief token",
            self.rounds, self.chain, self.evasions, self.survivors
        )
    }
}

/// The thief-chain attack, `rounds` times: a thief exchanges a copy of a device's refresh token, then
/// its own chain until it has made `chain` exchanges, as fast as the store allows; then the device
/// presents the token it holds. Counts the rounds where that was not answered as reuse, and those where
/// any token the thief obtained still works afterwards. Both must be 0 on every store.
pub async fn thief_chains<St: TokenStore + Clone>(store: St, chain: usize, rounds: usize) -> ThiefChainReport {
    let tokens = RefreshTokens::new(store.clone());
    let mut report = ThiefChainReport { rounds, chain, ..ThiefChainReport::default() };
    for _ in 0..rounds {
        let user = fresh_user();
        let victim = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
        let mut stolen: Vec<TokenPair> = Vec::with_capacity(chain);
        let mut holding = victim.refresh.clone();
        for _ in 0..chain {
            let next = tokens.exchange(&bearer(&holding)).await.expect("the thief's exchanges succeed");
            holding = next.refresh.clone();
            stolen.push(next);
        }
        let caught = matches!(tokens.exchange(&bearer(&victim.refresh)).await, Err(RefreshError::Reused { .. }));
        report.evasions += usize::from(!caught);
        let mut survived = false;
        for pair in &stolen {
            survived |= pair_works(&store, pair).await;
        }
        survived |= tokens.exchange(&bearer(&holding)).await.is_ok();
        report.survivors += usize::from(survived);
        store.revoke_all_for_user(&user).await.unwrap();
    }
    report
}
