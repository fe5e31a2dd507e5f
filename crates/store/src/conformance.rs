//! Behaviour every [`RecordStore`] must show. A backend's tests call [`run_all`]
//! on a fresh, empty store.

use crate::{Collection, Expect, RecordStore, StoreError, Write};

pub async fn run_all(store: &dyn RecordStore) {
    put_get_and_revisions(store).await;
    expectations_are_checked(store).await;
    batches_are_atomic(store).await;
    list_is_ordered_and_paged(store).await;
    collections_are_separate(store).await;
    concurrent_batches_succeed_or_fail_alone(store).await;
    holds_and_prefix_conditions(store).await;
}

async fn holds_and_prefix_conditions(store: &dyn RecordStore) {
    let c = Collection::ThingType;
    store.commit(vec![Write::put(c, "held", Expect::Absent, b"h".to_vec())]).await.unwrap();
    let held = store.get(c, "held").await.unwrap().unwrap().revision;
    let stale = store.commit(vec![Write::hold(c, "held", Expect::Revision(held - 1))]).await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })), "{stale:?}");
    // Many batches hold one record at once: none fails for the others.
    let holders = (0..32).map(|i| {
        store.commit(vec![
            Write::hold(c, "held", Expect::Revision(held)),
            Write::put(c, format!("dependent {i:02}"), Expect::Absent, Vec::new()),
        ])
    });
    assert!(join_all(holders.collect()).await.iter().all(Result::is_ok), "holders do not contend");
    assert_eq!(store.get(c, "held").await.unwrap().unwrap().revision, held, "a hold writes nothing");

    let guarded_delete = |extra: Vec<Write>| {
        let mut batch = vec![Write::delete(c, "held", Expect::Revision(held))];
        batch.extend(extra);
        batch.push(Write::none_with_prefix(c, "dependent "));
        batch
    };
    let err = store.commit(guarded_delete(Vec::new())).await;
    assert!(matches!(err, Err(StoreError::Conflict { .. })), "dependents remain: {err:?}");
    assert!(store.get(c, "held").await.unwrap().is_some(), "and nothing was deleted");
    let dependents: Vec<Write> =
        (0..32).map(|i| Write::delete(c, format!("dependent {i:02}"), Expect::Anything)).collect();
    // Keys that only share the prefix's start do not count.
    store.commit(vec![Write::put(c, "dependent", Expect::Absent, Vec::new())]).await.unwrap();
    store.commit(vec![Write::put(c, "dependents!", Expect::Absent, Vec::new())]).await.unwrap();
    store.commit(guarded_delete(dependents)).await.unwrap();
    assert_eq!(store.get(c, "held").await.unwrap(), None);
    let cleanup = ["dependent", "dependents!"].map(|key| Write::delete(c, key, Expect::Anything));
    store.commit(cleanup.to_vec()).await.unwrap();
}

async fn put_get_and_revisions(store: &dyn RecordStore) {
    let c = Collection::Thing;
    assert_eq!(store.get(c, "a").await.unwrap(), None);
    let committed = store.commit(vec![Write::put(c, "a", Expect::Absent, b"one".to_vec())]).await.unwrap();
    let first = store.get(c, "a").await.unwrap().unwrap();
    assert_eq!(first.body, b"one");
    assert_eq!(first.revision, committed, "commit answers the revision it wrote");
    let committed =
        store.commit(vec![Write::put(c, "a", Expect::Revision(first.revision), b"two".to_vec())]).await.unwrap();
    let second = store.get(c, "a").await.unwrap().unwrap();
    assert_eq!(second.body, b"two");
    assert_eq!(second.revision, committed);
    assert!(second.revision > first.revision);
    store.commit(vec![Write::delete(c, "a", Expect::Revision(second.revision))]).await.unwrap();
    assert_eq!(store.get(c, "a").await.unwrap(), None);
    // A record made again never takes a revision an old reader could hold.
    store.commit(vec![Write::put(c, "a", Expect::Absent, b"again".to_vec())]).await.unwrap();
    let again = store.get(c, "a").await.unwrap().unwrap();
    assert!(again.revision > second.revision);
    store.commit(vec![Write::delete(c, "a", Expect::Anything)]).await.unwrap();
}

async fn expectations_are_checked(store: &dyn RecordStore) {
    let c = Collection::ThingType;
    store.commit(vec![Write::put(c, "x", Expect::Anything, b"1".to_vec())]).await.unwrap();
    let stale = store.get(c, "x").await.unwrap().unwrap().revision - 1;
    for expect in [Expect::Absent, Expect::Revision(stale)] {
        let err = store.commit(vec![Write::put(c, "x", expect, b"2".to_vec())]).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{expect:?}: {err}");
    }
    let err = store.commit(vec![Write::delete(c, "missing", Expect::Revision(1))]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }));
    assert_eq!(store.get(c, "x").await.unwrap().unwrap().body, b"1");
}

async fn batches_are_atomic(store: &dyn RecordStore) {
    let c = Collection::ThingGroup;
    store.commit(vec![Write::put(c, "held", Expect::Absent, b"h".to_vec())]).await.unwrap();
    let held = store.get(c, "held").await.unwrap().unwrap().revision;
    let batch = vec![
        Write::put(c, "new", Expect::Absent, b"n".to_vec()),
        Write::delete(c, "held", Expect::Anything),
        Write::put(c, "held", Expect::Revision(held + 1000), b"bad".to_vec()),
    ];
    assert!(store.commit(batch).await.is_err());
    let checked = vec![
        Write::put(c, "new", Expect::Absent, b"n".to_vec()),
        Write::check(c, "held", Expect::Revision(held + 1000)),
    ];
    assert!(store.commit(checked).await.is_err(), "a failed check must fail the batch");
    assert_eq!(store.get(c, "new").await.unwrap(), None, "a failed batch must write nothing");
    assert_eq!(store.get(c, "held").await.unwrap().unwrap().body, b"h");
    let checked =
        vec![Write::put(c, "new", Expect::Absent, b"n".to_vec()), Write::check(c, "held", Expect::Revision(held))];
    store.commit(checked).await.unwrap();
    let after = store.get(c, "held").await.unwrap().unwrap();
    assert_eq!(after.body, b"h", "a check keeps the body");
    assert!(after.revision > held, "a check takes a new revision, so racing batches fail");
    let stale_delete = vec![Write::delete(c, "held", Expect::Revision(held))];
    assert!(store.commit(stale_delete).await.is_err());
    // Unconditional writes before the one that fails its expectation are not kept
    // either, whatever order the store applies them in.
    let index_then_taken = vec![
        Write::put(c, "entry", Expect::Anything, Vec::new()),
        Write::put(c, "held", Expect::Absent, b"again".to_vec()),
    ];
    let failed = store.commit(index_then_taken).await;
    assert!(matches!(failed, Err(StoreError::Conflict { ref key, .. }) if key == "held"), "{failed:?}");
    let entry_then_stale_hold =
        vec![Write::put(c, "entry", Expect::Anything, Vec::new()), Write::hold(c, "held", Expect::Revision(held))];
    assert!(matches!(store.commit(entry_then_stale_hold).await, Err(StoreError::Conflict { .. })));
    assert_eq!(store.get(c, "entry").await.unwrap(), None, "a failed batch must write nothing");
    // Positive control: the same shape with expectations that hold is written.
    let entry_then_new = vec![
        Write::put(c, "entry", Expect::Anything, Vec::new()),
        Write::hold(c, "held", Expect::Revision(after.revision)),
        Write::put(c, "fresh", Expect::Absent, b"f".to_vec()),
    ];
    store.commit(entry_then_new).await.unwrap();
    assert!(store.get(c, "entry").await.unwrap().is_some());
}

async fn list_is_ordered_and_paged(store: &dyn RecordStore) {
    let c = Collection::BillingGroup;
    let keys = ["d", "a", "c", "b", "e"];
    let writes = keys.iter().map(|k| Write::put(c, *k, Expect::Absent, k.as_bytes().to_vec())).collect();
    store.commit(writes).await.unwrap();
    let first = store.list(c, None, 2).await.unwrap();
    assert_eq!(first.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    let rest = store.list(c, Some("b"), 10).await.unwrap();
    assert_eq!(rest.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["c", "d", "e"]);
}

async fn collections_are_separate(store: &dyn RecordStore) {
    store.commit(vec![Write::put(Collection::Setting, "same", Expect::Absent, b"s".to_vec())]).await.unwrap();
    store.commit(vec![Write::put(Collection::Thing, "same", Expect::Absent, b"t".to_vec())]).await.unwrap();
    assert_eq!(store.get(Collection::Setting, "same").await.unwrap().unwrap().body, b"s");
    assert_eq!(store.get(Collection::Thing, "same").await.unwrap().unwrap().body, b"t");
}

/// Many batches at once (a backend may commit them together): each is decided on
/// its own expectations, and only one of several racing creations of a key wins.
async fn concurrent_batches_succeed_or_fail_alone(store: &dyn RecordStore) {
    let c = Collection::MqttSession;
    let racing = (0..64).map(|i| store.commit(vec![Write::put(c, "contested", Expect::Absent, vec![i])]));
    let independent = (0..64).map(|i| {
        store.commit(vec![
            Write::put(c, format!("own-{i:02}"), Expect::Absent, vec![i]),
            Write::put(c, format!("own-{i:02}-twin"), Expect::Absent, vec![i]),
        ])
    });
    let mut racing = join_all(racing.chain(independent).collect()).await;
    let independent = racing.split_off(64);
    assert_eq!(racing.iter().filter(|r| r.is_ok()).count(), 1, "exactly one creation wins");
    assert!(racing.iter().all(|r| matches!(r, Ok(_) | Err(crate::StoreError::Conflict { .. }))));
    assert!(independent.iter().all(Result::is_ok));
    let listed = store.list(c, Some("own-"), 500).await.unwrap();
    assert_eq!(listed.len(), 128);
    let mut writes: Vec<Write> =
        listed.iter().map(|r| Write::delete(c, r.key.clone(), Expect::Revision(r.revision))).collect();
    writes.push(Write::delete(c, "contested", Expect::Anything));
    store.commit(writes).await.unwrap();
}

/// Two stores on one database, as two nodes share one: expectations, revisions and
/// read-modify-write loops hold across them.
pub async fn run_shared(a: &dyn RecordStore, b: &dyn RecordStore) {
    let c = Collection::Certificate;
    let racing = (0..32u8).map(|i| {
        let store = if i % 2 == 0 { a } else { b };
        store.commit(vec![Write::put(c, "shared", Expect::Absent, vec![i])])
    });
    let outcomes = join_all(racing.collect()).await;
    assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1, "exactly one creation wins across stores");
    assert!(outcomes.iter().all(|r| matches!(r, Ok(_) | Err(StoreError::Conflict { .. }))));
    let seen = a.get(c, "shared").await.unwrap().unwrap();
    assert_eq!(b.get(c, "shared").await.unwrap().as_ref(), Some(&seen));
    b.commit(vec![Write::put(c, "shared", Expect::Revision(seen.revision), b"by b".to_vec())]).await.unwrap();
    let err = a.commit(vec![Write::put(c, "shared", Expect::Revision(seen.revision), b"by a".to_vec())]).await;
    assert!(matches!(err, Err(StoreError::Conflict { .. })), "a stale revision fails on the other store: {err:?}");
    let latest = a.get(c, "shared").await.unwrap().unwrap();
    assert_eq!(latest.body, b"by b");
    a.commit(vec![Write::put(c, "after", Expect::Absent, Vec::new())]).await.unwrap();
    assert!(b.get(c, "after").await.unwrap().unwrap().revision > latest.revision, "one revision sequence");

    // Read-modify-write with retry on conflict, from both stores at once: no lost update.
    a.commit(vec![Write::put(c, "counter", Expect::Absent, 0u32.to_be_bytes().to_vec())]).await.unwrap();
    let increments = (0..16).map(|i| {
        let store = if i % 2 == 0 { a } else { b };
        Box::pin(async move {
            for _ in 0..10 {
                loop {
                    let current = store.get(c, "counter").await.unwrap().unwrap();
                    let value = u32::from_be_bytes(current.body[..].try_into().unwrap()) + 1;
                    let write =
                        Write::put(c, "counter", Expect::Revision(current.revision), value.to_be_bytes().to_vec());
                    match store.commit(vec![write]).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(err) => panic!("increment failed: {err}"),
                    }
                }
            }
        }) as std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>
    });
    join_all(increments.collect()).await;
    let counter = b.get(c, "counter").await.unwrap().unwrap();
    assert_eq!(u32::from_be_bytes(counter.body[..].try_into().unwrap()), 160);
    let cleanup = ["shared", "after", "counter"].map(|key| Write::delete(c, key, Expect::Anything));
    a.commit(cleanup.to_vec()).await.unwrap();

    // A dependent written under a hold through one store, and the held record removed
    // through the other with a check for dependents: never both.
    for round in 0..20 {
        let parent = format!("parent-{round}");
        a.commit(vec![Write::put(c, parent.clone(), Expect::Absent, Vec::new())]).await.unwrap();
        let revision = a.get(c, &parent).await.unwrap().unwrap().revision;
        let child = format!("child-{round} x");
        let attach = a.commit(vec![
            Write::hold(c, parent.clone(), Expect::Revision(revision)),
            Write::put(c, child.clone(), Expect::Absent, Vec::new()),
        ]);
        let remove = b.commit(vec![
            Write::delete(c, parent.clone(), Expect::Revision(revision)),
            Write::none_with_prefix(c, format!("child-{round} ")),
        ]);
        let outcomes = join_all(vec![attach, remove]).await;
        let parent_left = a.get(c, &parent).await.unwrap().is_some();
        let child_left = a.get(c, &child).await.unwrap().is_some();
        assert!(parent_left || !child_left, "round {round}: a dependent outlived what it held: {outcomes:?}");
        assert!(outcomes.iter().any(Result::is_ok), "round {round}: one of them succeeds: {outcomes:?}");
        a.commit(vec![Write::delete(c, parent, Expect::Anything), Write::delete(c, child, Expect::Anything)])
            .await
            .unwrap();
    }
}

/// Polls every future together until all finish (without a runtime dependency).
async fn join_all<T>(futures: Vec<std::pin::Pin<Box<dyn Future<Output = T> + Send + '_>>>) -> Vec<T> {
    let mut pending: Vec<_> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => waiting = true,
                }
            }
        }
        if waiting { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}
