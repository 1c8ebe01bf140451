-- Our own case (not a copy): snapshots of every level and their rules, as
-- MatrixOne's test/distributed/cases/snapshot/sys_create_snapshot_for_sys_db_table_level,
-- nonsys_create_snapshot_for_nonsys_db_table_level and cluster_level_* cases
-- record them (pkg/frontend/snapshot.go doCreateSnapshot).
drop account if exists rp_acc1;
create account rp_acc1 admin_name = 'rp_admin' identified by '111';
create database if not exists rp_db;
create table rp_db.t1 (a int);
create snapshot rp_cluster for cluster;
create snapshot rp_acc for account rp_acc1;
create snapshot rp_self for account;
create snapshot rp_db_sp for database rp_db;
create snapshot rp_tbl_sp for table rp_db t1;
-- same name again: snapshot names are unique per creator
create snapshot rp_acc for account rp_acc1;
-- objects that do not exist
create snapshot rp_bad1 for database rp_nodb;
create snapshot rp_bad2 for table rp_db t9;
create snapshot rp_bad3 for account rp_noacc;
create snapshot rp_bad4 for database mo_catalog;
-- @ignore:1
show snapshots;
-- @ignore:1
show snapshots where snapshot_level = 'table';
-- @session:id=1&user=rp_acc1:rp_admin&password=111
create snapshot rp_t_cluster for cluster;
create snapshot rp_t_other for account sys;
create snapshot rp_t_self for account;
-- @ignore:1
show snapshots;
drop snapshot rp_t_self;
drop snapshot rp_t_self;
-- @session
drop snapshot rp_cluster;
drop snapshot rp_acc;
drop snapshot rp_self;
drop snapshot rp_db_sp;
drop snapshot rp_tbl_sp;
drop snapshot if exists rp_tbl_sp;
show snapshots;
drop database rp_db;
drop account rp_acc1;
