//! The contract: its cases, registered one line each, and the runner that reports every one.

use super::*;

// ---------------------------------------------------------------------------------------------------
// The contract

/// One promise of the store contract: its name, what it checks, and the check, which panics when the
/// promise is broken. See [`contract_cases`].
pub struct ContractCase<St> {
    /// The case's name (its function's), as the report prints it.
    pub name: &'static str,
    /// The promise it checks, in a sentence.
    pub promise: &'static str,
    run: fn(St) -> CaseFuture,
}

pub(super) type CaseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl<St> fmt::Debug for ContractCase<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContractCase").field("name", &self.name).field("promise", &self.promise).finish()
    }
}

/// Registers an `async fn(St)` as a case: `case!(function, "the promise")`.
macro_rules! case {
    ($check:ident, $promise:literal) => {
        ContractCase { name: stringify!($check), promise: $promise, run: |store| Box::pin($check(store)) }
    };
}

/// Every case of [`store_contract`], in the order it runs them. Adding a case is one line here.
pub fn contract_cases<St: TokenStore + Clone>() -> Vec<ContractCase<St>> {
    vec![
        case!(
            issued_tokens_are_found_with_their_fields,
            "an issued token is found by id with every field it was issued with"
        ),
        case!(only_the_digest_is_stored, "the record holds the digest, never the secret"),
        case!(unknown_ids_are_absent, "unknown token and session ids are absent, not errors"),
        case!(a_token_of_its_own_is_a_session, "a token issued on its own is a session of one token"),
        case!(
            revoke_all_removes_every_token_of_that_user_only,
            "log out everywhere revokes every token of that user and of no other"
        ),
        case!(
            sessions_are_listed_once_each_newest_first,
            "list_sessions lists each session once, newest first, with its fields"
        ),
        case!(a_session_of_another_user_is_never_touched, "revoking a session id of another user revokes nothing"),
        case!(others_keeps_exactly_the_presenting_session, "Sessions::AllExcept keeps exactly the presenting session"),
        case!(an_exchange_replaces_the_pair_in_the_same_session, "an exchange replaces the pair in the same session"),
        case!(
            reuse_revokes_the_session_and_spares_the_others,
            "reuse of a refresh token revokes its session and spares the others"
        ),
        case!(reuse_can_revoke_every_session, "OnReuse::RevokeAllSessions revokes every session of the user"),
        case!(
            bad_presentations_revoke_nothing,
            "wrong secrets, access tokens and unknown ids presented for refresh revoke nothing"
        ),
        case!(
            the_reuse_interval_lets_a_retry_through,
            "within the reuse interval a retried refresh token is exchanged again"
        ),
        case!(
            rotated_tokens_are_bounded_after_50_refreshes,
            "50 refreshes leave one session whose first refresh token is still detected as reuse"
        ),
        case!(
            thief_chains_of_1_8_40_and_300_exchanges_are_caught,
            "a thief's chain of 1, 8, 40 or 300 exchanges never outruns reuse detection"
        ),
        case!(
            forged_refresh_tokens_revoke_nothing,
            "forged refresh secrets for real ids (any shape, another session's key) revoke nothing"
        ),
        case!(
            the_session_limit_revokes_the_oldest_or_refuses,
            "the session limit revokes the oldest sessions, or refuses, atomically"
        ),
        case!(prune_removes_expired_tokens_only, "prune removes expired (and, if asked, old) tokens only"),
        case!(
            concurrent_logins_and_logouts_leave_no_unindexed_token,
            "concurrent logins and logouts leave no token outside the user index"
        ),
        case!(works_as_a_trait_object_case, "the store works as an Arc<dyn TokenStore>"),
        case!(
            forced_interleavings_case,
            "exchanges held before and after their store operation stay atomic against reuse and logout"
        ),
        case!(
            racing_presentations_leak_nothing,
            "of simultaneous presentations of one refresh token one wins, and nothing survives reuse"
        ),
        case!(an_exchange_racing_a_logout_leaks_nothing, "no token survives a logout racing an exchange"),
        case!(
            inserting_exchanges_leak_nothing,
            "exchanges that must create their access token are as atomic as the others"
        ),
    ]
}

/// What [`check_store_contract`] found: each case's name and, for a broken promise, the failure.
#[derive(Debug, Default)]
pub struct ContractReport {
    /// `(case, Ok(()) | Err(failure message))`, in the order the cases ran.
    pub results: Vec<(&'static str, Result<(), String>)>,
}

impl ContractReport {
    /// The cases that failed, with their messages.
    pub fn failures(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.results.iter().filter_map(|(name, result)| result.as_ref().err().map(|error| (*name, error.as_str())))
    }

    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }
}

impl fmt::Display for ContractReport {
    /// One line per case, `ok` or `FAILED: message`, then a count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, result) in &self.results {
            match result {
                Ok(()) => writeln!(f, "store contract: {name} ... ok")?,
                Err(error) => writeln!(f, "store contract: {name} ... FAILED: {error}")?,
            }
        }
        let failed = self.failures().count();
        write!(f, "store contract: {} passed, {failed} failed", self.results.len() - failed)
    }
}

/// Runs every case of [`contract_cases`], each on a store from `make` and in a task of its own, and
/// reports each: a broken promise does not stop the others.
pub async fn check_store_contract<St, F>(make: F) -> ContractReport
where
    St: TokenStore + Clone,
    F: Fn() -> St,
{
    let mut report = ContractReport::default();
    for case in contract_cases::<St>() {
        let outcome = tokio::spawn((case.run)(make())).await;
        let result = outcome.map_err(|error| match error.try_into_panic() {
            Ok(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panicked".to_owned()),
            Err(error) => error.to_string(),
        });
        report.results.push((case.name, result));
    }
    report
}

/// Runs every case of the contract (see the [module docs](crate::testing) for the list) on stores from `make`
/// (which may return clones of one store), prints a line per case, and panics at the end listing the
/// broken promises, if any.
pub async fn store_contract<St, F>(make: F)
where
    St: TokenStore + Clone,
    F: Fn() -> St,
{
    let report = check_store_contract(make).await;
    println!("{report}");
    if !report.passed() {
        let broken: Vec<String> = report.failures().map(|(name, error)| format!("  {name}: {error}")).collect();
        panic!("the store broke {} promise(s) of the contract:\n{}", broken.len(), broken.join("\n"));
    }
}
