//! A connection's delivery queue: bounded, closable by its receiver (a parked
//! session takes back what is left), and holding memory only while it holds
//! deliveries — an idle connection's queue is an empty list, not a preallocated block.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

/// Capacity kept by a queue that has emptied: a burst's larger buffer is released.
const KEPT_CAPACITY: usize = 16;

struct Queue<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    senders: AtomicUsize,
    /// Wakes the receiver: an item arrived, or the last sender left.
    readable: Notify,
    /// Wakes senders waiting for room: an item left, or the queue closed.
    writable: Notify,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Sender<T>(Arc<Queue<T>>);

pub struct Receiver<T>(Arc<Queue<T>>);

#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    Full(T),
    Closed(T),
}

#[derive(Debug, PartialEq, Eq)]
pub enum SendTimeoutError<T> {
    Timeout(T),
    Closed(T),
}

/// A queue of at most `capacity` items.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State { items: VecDeque::new(), closed: false }),
        capacity,
        senders: AtomicUsize::new(1),
        readable: Notify::new(),
        writable: Notify::new(),
    });
    (Sender(queue.clone()), Receiver(queue))
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Self(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.readable.notify_one();
        }
    }
}

impl<T> Sender<T> {
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let mut state = self.0.lock();
        if state.closed {
            return Err(TrySendError::Closed(item));
        }
        if state.items.len() >= self.0.capacity {
            return Err(TrySendError::Full(item));
        }
        state.items.push_back(item);
        drop(state);
        self.0.readable.notify_one();
        Ok(())
    }

    /// Waits up to `timeout` for room.
    pub async fn send_timeout(&self, item: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut item = item;
        loop {
            let room = self.0.writable.notified();
            tokio::pin!(room);
            // Registered before the check, so room made in between is not missed.
            room.as_mut().enable();
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(SendTimeoutError::Closed(back)),
                Err(TrySendError::Full(back)) => item = back,
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(SendTimeoutError::Timeout(item));
            }
        }
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once the queue is closed or every sender left, and empty.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            let arrived = self.0.readable.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            {
                let mut state = self.0.lock();
                if let Some(item) = Self::pop(&mut state) {
                    drop(state);
                    self.0.writable.notify_one();
                    return Some(item);
                }
                if state.closed || self.0.senders.load(Ordering::Acquire) == 0 {
                    return None;
                }
            }
            arrived.await;
        }
    }

    pub fn try_recv(&mut self) -> Option<T> {
        let item = Self::pop(&mut self.0.lock())?;
        self.0.writable.notify_one();
        Some(item)
    }

    fn pop(state: &mut State<T>) -> Option<T> {
        let item = state.items.pop_front()?;
        if state.items.is_empty() && state.items.capacity() > KEPT_CAPACITY {
            state.items = VecDeque::new();
        }
        Some(item)
    }

    /// Refuses further items; those already queued can still be received.
    pub fn close(&mut self) {
        self.0.lock().closed = true;
        self.0.writable.notify_waiters();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_arrive_in_order_up_to_the_capacity() {
        let (sender, mut receiver) = channel(2);
        sender.try_send(1).unwrap();
        sender.try_send(2).unwrap();
        assert_eq!(sender.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(receiver.recv().await, Some(1));
        sender.try_send(3).unwrap();
        assert_eq!(receiver.try_recv(), Some(2));
        assert_eq!(receiver.recv().await, Some(3));
        assert_eq!(receiver.try_recv(), None);
    }

    #[tokio::test]
    async fn a_closed_queue_refuses_items_but_gives_up_those_it_holds() {
        let (sender, mut receiver) = channel(4);
        sender.try_send(1).unwrap();
        receiver.close();
        assert_eq!(sender.try_send(2), Err(TrySendError::Closed(2)));
        assert_eq!(sender.send_timeout(3, Duration::from_secs(1)).await, Err(SendTimeoutError::Closed(3)));
        assert_eq!(receiver.try_recv(), Some(1));
        assert_eq!(receiver.recv().await, None);
    }

    #[tokio::test]
    async fn the_receiver_learns_when_every_sender_left() {
        let (sender, mut receiver) = channel::<u8>(4);
        let other = sender.clone();
        drop(sender);
        other.try_send(7).unwrap();
        let waiting = tokio::spawn(async move { (receiver.recv().await, receiver.recv().await) });
        tokio::task::yield_now().await;
        drop(other);
        assert_eq!(waiting.await.unwrap(), (Some(7), None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_waits_for_room_until_its_timeout() {
        let (sender, mut receiver) = channel(1);
        sender.try_send(1).unwrap();
        // Room is made while the sender waits: it gets in.
        let waiting = tokio::spawn({
            let sender = sender.clone();
            async move { sender.send_timeout(2, Duration::from_millis(20)).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(receiver.try_recv(), Some(1));
        assert_eq!(waiting.await.unwrap(), Ok(()));
        // No room comes: it times out with its item.
        assert_eq!(sender.send_timeout(3, Duration::from_millis(20)).await, Err(SendTimeoutError::Timeout(3)));
        assert_eq!(receiver.recv().await, Some(2));
    }

    #[tokio::test]
    async fn an_emptied_queue_releases_a_burst() {
        let (sender, mut receiver) = channel(1000);
        for n in 0..500 {
            sender.try_send(n).unwrap();
        }
        while receiver.try_recv().is_some() {}
        assert!(receiver.0.lock().items.capacity() <= KEPT_CAPACITY);
    }
}
