-- Our own case (not a copy): restores of each level, as MatrixOne's
-- test/distributed/cases/snapshot/sys_restore_to_nonsys_account,
-- sys_restore_to_newnonsys_account, restore_dropped_account and
-- cluster/restore_dropped_account_with_cluster record them
-- (pkg/frontend/snapshot.go doRestoreSnapshot, checkRestorePriv).
drop account if exists rr_acc1;
drop account if exists rr_acc2;
create account rr_acc1 admin_name = 'rr_admin' identified by '111';
create account rr_acc2 admin_name = 'rr_admin2' identified by '222';
-- @session:id=1&user=rr_acc1:rr_admin&password=111
create database rr_db1;
create table rr_db1.t1 (a int);
create user rr_user identified by 'u111';
-- @session
create snapshot rr_sp for account rr_acc1;
create snapshot rr_cl for cluster;
-- @session:id=1&user=rr_acc1:rr_admin&password=111
drop database rr_db1;
drop user rr_user;
create database rr_later;
show databases;
-- @session
restore account rr_acc1 {snapshot = "rr_sp"};
-- @session:id=1&user=rr_acc1:rr_admin&password=111
show databases;
show tables from rr_db1;
-- @session
-- the snapshot's users come back with it: rr_user logs in again
-- @session:id=2&user=rr_acc1:rr_user&password=u111
show databases like 'rr_%';
-- @session
-- into another account (mo_user is copied: rr_acc2 gets rr_acc1's users)
restore account rr_acc1 {snapshot = "rr_sp"} to account rr_acc2;
-- @session:id=3&user=rr_acc2:rr_admin&password=111
show databases;
-- @session
-- rules
restore account rr_acc1 {snapshot = "rr_none"};
restore database rr_db1 {snapshot = "rr_cl"};
restore account rr_acc1 {snapshot = "rr_sp"} to account rr_none;
-- a dropped account comes back from its account snapshot
drop account rr_acc1;
restore account rr_acc1 {snapshot = "rr_sp"};
-- @ignore:2,3,4,5,6,7,8,9
show accounts like 'rr_acc1';
-- and from a cluster snapshot
drop account rr_acc2;
restore cluster {snapshot = "rr_cl"};
-- @ignore:2,3,4,5,6,7,8,9
show accounts like 'rr_acc%';
drop snapshot rr_sp;
drop snapshot rr_cl;
drop account rr_acc1;
drop account rr_acc2;
