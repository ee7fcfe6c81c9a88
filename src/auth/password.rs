//! Argon2id password hashes in PHC format, computed on a small fixed set of worker threads.
//!
//! Each Argon2 run needs ~19 MiB. Run on the blocking pool with no bound, 200 concurrent logins
//! (no account needed: an unknown org runs a dummy check) took the process to 4.8 GiB, and the
//! allocator kept most of it. So hashing happens on one thread per core, each reusing one
//! memory buffer. A few callers per worker may queue (briefly) for one; the rest get [`Busy`] (a
//! 503) at once. A caller can reserve its place in the queue before doing anything else, so
//! that during a storm the answer is a cheap 503 and the failures that feed the login throttle
//! stay few (see `service::login`).

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::crypto::SecretString;

/// Hashing failed (only on a broken random source).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError;

/// Every hashing worker stayed busy for the whole queue wait.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("password hashing is busy; retry shortly")]
pub struct Busy;

/// Hashes a password with Argon2id defaults and a random salt.
pub fn hash(password: &SecretString) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.expose().as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| HashError)
}

/// True when `password` matches the PHC `stored` hash. A malformed hash never matches.
pub fn verify(password: &SecretString, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Largest Argon2 memory a stored hash may ask for (64 MiB); ours use 19 MiB.
const MAX_BLOCKS: usize = 64 * 1024;

/// [`verify`] with a caller-owned memory buffer, so repeated checks allocate nothing.
fn verify_with(password: &SecretString, stored: &str, blocks: &mut Vec<Block>) -> bool {
    let mut check = || -> Option<bool> {
        let parsed = PasswordHash::new(stored).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).ok()?;
        let salt = parsed.salt?;
        let expected = parsed.hash?;
        let needed = params.block_count();
        if needed > MAX_BLOCKS {
            return None;
        }
        if blocks.len() < needed {
            blocks.resize(needed, Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(
                password.expose().as_bytes(),
                &salt,
                &mut out,
                &mut blocks[..needed],
            )
            .ok()?;
        // Output's equality is constant-time.
        Some(Output::new(&out).ok()? == expected)
    };
    check().unwrap_or(false)
}

/// A stored hash nobody's password matches, for checks that must cost what a real one costs.
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| hash(&SecretString::new("dummy-password".into())).ok())
        .as_deref()
}

enum Job {
    Verify {
        password: SecretString,
        stored: Option<String>,
        reply: oneshot::Sender<bool>,
    },
    Hash {
        password: SecretString,
        reply: oneshot::Sender<Result<String, HashError>>,
    },
}

/// Callers allowed to wait per worker, beyond the one it is serving.
const WAITING_PER_WORKER: usize = 4;

/// The hashing workers: one thread per core, a short queue in front.
pub struct Hasher {
    jobs: SyncSender<(Job, OwnedSemaphorePermit)>,
    permits: Arc<Semaphore>,
    places: Arc<Semaphore>,
    queue_wait: Duration,
}

/// A place in the hashing queue, held from [`Hasher::reserve`] until the job is done.
#[derive(Debug)]
pub struct Place {
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("free", &self.permits.available_permits())
            .finish()
    }
}

fn worker(jobs: Arc<Mutex<Receiver<(Job, OwnedSemaphorePermit)>>>) {
    let mut blocks: Vec<Block> = Vec::new();
    loop {
        let next = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        // The sender is gone: the application shut down.
        let Ok((job, _permit)) = next else { return };
        match job {
            Job::Verify {
                password,
                stored,
                reply,
            } => {
                let matches = match stored {
                    Some(stored) => verify_with(&password, &stored, &mut blocks),
                    None => {
                        // Same cost as a real check; the answer is always no.
                        dummy_hash().map(|d| verify_with(&password, d, &mut blocks));
                        false
                    }
                };
                let _ = reply.send(matches);
            }
            Job::Hash { password, reply } => {
                let _ = reply.send(hash(&password));
            }
        }
    }
}

impl Hasher {
    /// `threads` workers (at least one); callers wait at most `queue_wait` for one.
    pub fn new(threads: usize, queue_wait: Duration) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = sync_channel(threads);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            // A worker that cannot start only lowers capacity; the others still serve.
            let _ = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || worker(rx));
        }
        Self {
            jobs: tx,
            permits: Arc::new(Semaphore::new(threads)),
            places: Arc::new(Semaphore::new(threads * (1 + WAITING_PER_WORKER))),
            queue_wait,
        }
    }

    /// One worker per core, callers queueing up to two seconds.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self::new(cores, Duration::from_secs(2))
    }

    /// Takes a place in the queue, or [`Busy`] at once when the queue is full.
    pub fn reserve(&self) -> Result<Place, Busy> {
        self.places
            .clone()
            .try_acquire_owned()
            .map(|permit| Place { _permit: permit })
            .map_err(|_| Busy)
    }

    async fn submit<T>(
        &self,
        _place: &Place,
        job: impl FnOnce(oneshot::Sender<T>) -> Job,
    ) -> Result<oneshot::Receiver<T>, Busy> {
        let permit = tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let (tx, rx) = oneshot::channel();
        // A permit is held, so a worker is free and the channel has room.
        self.jobs.try_send((job(tx), permit)).map_err(|_| Busy)?;
        Ok(rx)
    }

    /// Checks `password` against `stored`; with None, spends the same time and answers false
    /// (an unknown org or user must not be told apart by timing).
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<bool, Busy> {
        let place = self.reserve()?;
        self.verify_in(place, password, stored).await
    }

    /// [`Hasher::verify`] in a place reserved earlier.
    pub async fn verify_in(
        &self,
        place: Place,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<bool, Busy> {
        let rx = self
            .submit(&place, |reply| Job::Verify {
                password,
                stored,
                reply,
            })
            .await?;
        rx.await.map_err(|_| Busy)
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: SecretString) -> Result<Result<String, HashError>, Busy> {
        let place = self.reserve()?;
        let rx = self
            .submit(&place, |reply| Job::Hash { password, reply })
            .await?;
        rx.await.map_err(|_| Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_hash_verifies_only_the_right_password() {
        let pw = SecretString::new("correct horse battery".into());
        let stored = hash(&pw).unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify(&pw, &stored));
        assert!(!verify(&SecretString::new("wrong".into()), &stored));
        assert!(!verify(&pw, "not-a-hash"));
        let mut blocks = Vec::new();
        assert!(verify_with(&pw, &stored, &mut blocks));
        assert!(!verify_with(
            &SecretString::new("wrong".into()),
            &stored,
            &mut blocks
        ));
        assert!(!verify_with(&pw, "not-a-hash", &mut blocks));
    }

    #[tokio::test]
    async fn workers_verify_and_refuse_when_busy() {
        let hasher = Hasher::new(1, Duration::from_millis(1));
        let pw = SecretString::new("correct horse battery".into());
        let stored = hasher.hash(pw.clone()).await.unwrap().unwrap();
        assert!(
            hasher
                .verify(pw.clone(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(!hasher.verify(pw.clone(), None).await.unwrap());
        let answers = futures::future::join_all(
            (0..8).map(|_| hasher.verify(pw.clone(), Some(stored.clone()))),
        )
        .await;
        assert!(answers.iter().any(Result::is_err), "nothing was refused");
        assert!(answers.iter().any(|a| matches!(a, Ok(true))));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let hasher = Hasher::new(1, Duration::from_secs(30));
        let places: Vec<Place> = (0..=WAITING_PER_WORKER)
            .map(|_| hasher.reserve().unwrap())
            .collect();
        assert!(hasher.reserve().is_err(), "queue beyond its bound");
        drop(places);
        assert!(hasher.reserve().is_ok());
    }
}
