//! Three-node clusters on loopback over real gRPC.

mod common;

use std::time::Duration;

use common::{names, Cluster};
use mo_br_replication::{Error, Role};
use tokio::time::{sleep, Instant};

const ELECTION: Duration = Duration::from_secs(5);
const CONVERGE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elects_one_leader_and_replicates() {
    let mut c = Cluster::start(3, 1000).await;
    let leader = c.leader(ELECTION).await;
    let leaders = c
        .nodes
        .values()
        .filter(|t| t.node.status().role == Role::Leader)
        .count();
    assert_eq!(leaders, 1);
    let want = names(0..100);
    for (i, e) in want.iter().enumerate() {
        let r = c
            .node(leader)
            .propose(e.clone().into_bytes())
            .await
            .unwrap();
        assert_eq!(r, (i as u64 + 1).to_be_bytes(), "apply's result comes back");
    }
    c.converge(&want, CONVERGE).await;
    let st = c.node(leader).status();
    assert!(st.commit_index >= 100 && st.applied_index == st.commit_index);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_says_who_leads() {
    let mut c = Cluster::start(3, 1000).await;
    let leader = c.leader(ELECTION).await;
    let follower = *c.nodes.keys().find(|id| **id != leader).unwrap();
    match c.node(follower).propose(b"x".to_vec()).await {
        Err(Error::NotLeader {
            leader: Some((id, addr)),
        }) => {
            assert_eq!(id, leader);
            assert_eq!(addr, c.peers[&leader]);
        }
        other => panic!("want NotLeader naming {leader}, got {other:?}"),
    }
    assert!(matches!(
        c.node(follower).read_index().await,
        Err(Error::NotLeader { leader: Some(_) })
    ));
    // The barrier works on the leader, and the read after it sees the write.
    c.node(leader).propose(b"y".to_vec()).await.unwrap();
    c.node(leader).read_index().await.unwrap();
    assert_eq!(c.entries(leader).await, vec!["y".to_string()]);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_elect_a_new_leader() {
    let mut c = Cluster::start(3, 1000).await;
    let mut want = names(0..10);
    for e in &want {
        c.propose(e).await;
    }
    let old = c.leader(ELECTION).await;
    c.stop(old).await;
    let stopped = Instant::now();
    let new = c.leader(ELECTION).await;
    eprintln!("new leader {new} after {:?}", stopped.elapsed());
    assert_ne!(new, old);
    for e in names(10..20) {
        c.propose(&e).await;
        want.push(e);
    }
    c.converge(&want, CONVERGE).await;
    c.shutdown_all().await;
}

/// Proposes 5 entries, stops a follower, proposes up to entry `upto` without
/// it. Returns the leader, the stopped follower and every entry proposed.
async fn follower_misses(c: &mut Cluster, upto: usize) -> (u64, u64, Vec<String>) {
    let mut want = names(0..5);
    for e in &want {
        c.propose(e).await;
    }
    let leader = c.leader(ELECTION).await;
    let down = *c.nodes.keys().find(|id| **id != leader).unwrap();
    c.stop(down).await;
    for e in names(5..upto) {
        c.propose(&e).await;
        want.push(e);
    }
    (leader, down, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_catches_up_from_the_log() {
    let mut c = Cluster::start(3, 1000).await;
    let (_, down, want) = follower_misses(&mut c, 30).await;
    c.restart(down).await;
    c.converge(&want, CONVERGE).await;
    let restores = c.node(down).read(|sm| sm.restores).await.unwrap();
    assert_eq!(restores, 0, "caught up from the log, no snapshot needed");
    assert_eq!(c.node(down).status().snapshot_index, 0);
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_catches_up_from_a_snapshot() {
    let mut c = Cluster::start(3, 20).await;
    let (leader, down, mut want) = follower_misses(&mut c, 130).await;
    let leader_snap = c.node(leader).status().snapshot_index;
    assert!(leader_snap >= 100, "the leader compacted: {leader_snap}");
    c.restart(down).await;
    c.converge(&want, CONVERGE).await;
    let restores = c.node(down).read(|sm| sm.restores).await.unwrap();
    assert_eq!(restores, 1, "the log it missed was gone: it got a snapshot");
    let st = c.node(down).status();
    assert!(st.snapshot_index >= 100, "{st:?}");
    // It keeps up by log afterwards.
    want.push("after".into());
    c.propose("after").await;
    c.converge(&want, CONVERGE).await;
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_quorum_then_recovery() {
    let mut c = Cluster::start(3, 1000).await;
    let mut want = names(0..3);
    for e in &want {
        c.propose(e).await;
    }
    let leader = c.leader(ELECTION).await;
    // Keep the leader, stop both followers: it must step down (check
    // quorum) and refuse to pretend.
    let others: Vec<u64> = c.nodes.keys().copied().filter(|id| *id != leader).collect();
    for id in &others {
        c.stop(*id).await;
    }
    let start = Instant::now();
    let err = loop {
        match c.node(leader).propose(b"lost?".to_vec()).await {
            Err(Error::NotLeader { .. }) => sleep(Duration::from_millis(50)).await,
            Err(e) => break e,
            Ok(_) => panic!("committed without a quorum"),
        }
    };
    let took = start.elapsed();
    eprintln!("NoQuorum after {took:?}");
    assert!(matches!(err, Error::NoQuorum), "{err:?}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert_eq!(
        err.to_string(),
        "no quorum: the coordinator cluster cannot commit (fewer than a majority of replicas are reachable)"
    );
    let start = Instant::now();
    let read = c.node(leader).read_index().await;
    eprintln!("read_index: {read:?} after {:?}", start.elapsed());
    assert!(read.is_err(), "read_index without quorum: {read:?}");
    assert_ne!(c.node(leader).status().role, Role::Leader);

    c.restart(others[0]).await;
    // The entry proposed without a quorum may or may not commit now;
    // everything before it is there, and new proposals go through.
    c.propose("back").await;
    let leader = c.leader(ELECTION).await;
    let got = c.entries(leader).await;
    assert_eq!(&got[..3], &want[..]);
    assert_eq!(got.last().map(String::as_str), Some("back"));
    want = got;
    c.converge(&want, CONVERGE).await;
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_restart_keeps_the_state() {
    let mut c = Cluster::start(3, 20).await;
    let mut want = names(0..45);
    for e in &want {
        c.propose(e).await;
    }
    c.converge(&want, CONVERGE).await;
    c.shutdown_all().await;
    for id in [1, 2, 3] {
        c.restart(id).await;
    }
    // Before any new commit, each node already replays its own disk.
    c.converge(&want, CONVERGE).await;
    for t in c.nodes.values() {
        assert!(t.node.status().snapshot_index >= 20);
    }
    want.push("after restart".into());
    c.propose("after restart").await;
    c.converge(&want, CONVERGE).await;
    c.shutdown_all().await;
}
