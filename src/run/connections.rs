//! The hosts a plan or a run has open, by inventory name: each host is connected once and its
//! connection reused by every step (and by the steps that read it as a peer). Hosts are
//! opened in parallel, at most `--forks` at a time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, Semaphore};

use crate::transport::HostConn;

#[derive(Default)]
pub struct Connections {
    open: Mutex<HashMap<String, Arc<HostConn>>>,
}

impl Connections {
    pub async fn get(&self, host: &str) -> Option<Arc<HostConn>> {
        self.open.lock().await.get(host).cloned()
    }

    pub async fn contains(&self, host: &str) -> bool {
        self.open.lock().await.contains_key(host)
    }

    /// Every open connection, for a module that reads other hosts or for undoing the run.
    pub async fn all(&self) -> HashMap<String, Arc<HostConn>> {
        self.open.lock().await.clone()
    }

    /// Hand every connection over (to unlock and close them); none is left open here.
    pub async fn take_all(&self) -> Vec<Arc<HostConn>> {
        self.open.lock().await.drain().map(|(_, c)| c).collect()
    }

    /// Open those of `hosts` not open yet, in parallel, at most `forks` at once. `open` gives
    /// for a host the work that opens it (connecting, and for a run locking it), or None to
    /// leave it out. The hosts that could not be opened, and why, in the order of `hosts`.
    pub async fn open_missing<E, Fut>(
        &self,
        hosts: &[String],
        forks: usize,
        mut open: impl FnMut(&str) -> Option<Fut>,
    ) -> Vec<(String, E)>
    where
        Fut: Future<Output = Result<HostConn, E>> + Send + 'static,
        E: From<tokio::task::JoinError> + Send + 'static,
    {
        let sem = Arc::new(Semaphore::new(forks.max(1)));
        let mut tasks = Vec::new();
        for h in hosts {
            if self.contains(h).await {
                continue;
            }
            let Some(work) = open(h) else {
                continue;
            };
            let sem = sem.clone();
            let task = tokio::spawn(async move {
                let _permit = sem.acquire().await;
                work.await
            });
            tasks.push((h.clone(), task));
        }
        let mut closed = Vec::new();
        for (h, task) in tasks {
            match task.await {
                Ok(Ok(conn)) => {
                    self.open.lock().await.insert(h, Arc::new(conn));
                }
                Ok(Err(why)) => closed.push((h, why)),
                Err(join) => closed.push((h, E::from(join))),
            }
        }
        closed
    }

    /// Close every connection.
    pub async fn close_all(&self) {
        crate::transport::close_all(self.take_all().await).await;
    }
}
