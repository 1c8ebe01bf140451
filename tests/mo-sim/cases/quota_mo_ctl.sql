-- Our own case (not a copy): per-level snapshot quotas set by sys and the
-- TN sync-protection verbs of mo_ctl, as MatrixOne's
-- test/distributed/cases/feature_limit/feature_limit_snapshot_quota.sql and
-- function/mo_ctl/mo_ctl_sync_protection.test record them
-- (pkg/sql/plan/function/func_feature_upsert.go, pkg/frontend/feature_limit.go,
-- pkg/vm/engine/tae/rpc/handle_debug.go).
drop account if exists rf_acc;
create account rf_acc admin_name = 'rf_admin' identified by '111';
set @rf_id = (select account_id from mo_catalog.mo_account where account_name = 'rf_acc');
-- @ignore:0
select mo_feature_limit_upsert(@rf_id, 'snapshot', 'database', 1);
-- @ignore:0
select mo_feature_limit_upsert(@rf_id, 'snapshot', 'account', 1);
select mo_feature_limit_upsert(@rf_id, 'snapshot', 'account', -2);
select mo_feature_limit_upsert(@rf_id, 'unknown_feat', 'account', 1);
-- @session:id=1&user=rf_acc:rf_admin&password=111
select mo_feature_limit_upsert(1, 'snapshot', 'account', 5);
create database rf_db;
create snapshot rf_d1 for database rf_db;
create snapshot rf_d2 for database rf_db;
drop snapshot rf_d1;
create snapshot rf_d2 for database rf_db;
create snapshot rf_a1 for account;
create snapshot rf_a2 for account;
drop snapshot rf_d2;
drop snapshot rf_a1;
drop database rf_db;
-- @session
-- sync protection: bad requests and unknown jobs
select mo_ctl('dn', 'diskcleaner', 'register_sync_protection.not_json');
select mo_ctl('dn', 'diskcleaner', 'register_sync_protection.{"job_id":"rf-job"}');
select mo_ctl('dn', 'diskcleaner', 'renew_sync_protection.{"job_id":"rf-none","valid_ts":1}');
select mo_ctl('dn', 'diskcleaner', 'unregister_sync_protection.{"job_id":"rf-none"}');
select mo_ctl('dn', 'diskcleaner', 'register_sync_protection.');
select mo_ctl('dn', 'diskcleaner', 'bogus_sync_protection.{}');
drop account rf_acc;
