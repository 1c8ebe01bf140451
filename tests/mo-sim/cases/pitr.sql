-- Our own case (not a copy): PITR create/show/alter/drop/restore and their
-- errors, as MatrixOne's test/distributed/cases/pitr/pitr.sql, pitr_basic.sql
-- and pitr_restore_account_clause.sql record them (pkg/frontend/pitr.go:
-- checkPitrValidOrNot, doCreatePitr, doAlterPitr, doDropPitr,
-- checkPitrInValidDurtion).
drop account if exists rq_acc1;
create account rq_acc1 admin_name = 'rq_admin' identified by '111';
create database rq_db;
create table rq_db.t1 (a int);
create pitr rq_p1 for account range 1 'h';
create pitr rq_p2 for cluster range 2 'd';
create pitr rq_p3 for database rq_db range 1 'mo';
create pitr rq_p4 for table rq_db t1 range 1 'y';
create pitr rq_p5 for account rq_acc1 range 3 'h';
-- errors
create pitr rq_p1 for account range 1 'h';
create pitr if not exists rq_p1 for account range 1 'h';
create pitr rq_p6 for account range 1 'hh';
create pitr rq_p6 for account range 101 'h';
create pitr rq_p6 for account range -1 'h';
create pitr rq_p6 for database rq_nodb range 1 'h';
create pitr rq_p6 for table rq_db t9 range 1 'h';
create pitr rq_p6 for account rq_noacc range 1 'h';
create pitr rq_p6 for account range 1 'd';
-- @ignore:1,2
show pitr;
-- @ignore:1,2
show pitr where pitr_level = 'database';
alter pitr rq_p1 range 5 'd';
alter pitr rq_nop range 5 'd';
alter pitr if exists rq_nop range 5 'd';
alter pitr rq_p1 range 0 'd';
-- @ignore:1,2
show pitr where pitr_name = 'rq_p1';
-- @session:id=1&user=rq_acc1:rq_admin&password=111
create pitr rq_t1 for cluster range 1 'h';
create pitr rq_t2 for account sys range 1 'h';
create pitr rq_t3 for account range 1 'h';
-- @ignore:1,2
show pitr;
drop pitr rq_t3;
drop pitr rq_t3;
-- @session
-- restores: unknown pitr, a time before the pitr existed, a time to come
restore from pitr rq_none '2020-01-01 00:00:00';
-- @regex("input timestamp 2020-01-01 00:00:00 is less than the pitr valid time",true)
restore from pitr rq_p1 '2020-01-01 00:00:00';
-- @regex("input timestamp 2099-01-01 00:00:00 is bigger than now timestamp",true)
restore from pitr rq_p1 '2099-01-01 00:00:00';
-- a system database is refused before the time is looked at
restore account sys database mo_catalog from pitr rq_p1 '2099-01-01 00:00:00';
drop pitr rq_p1;
drop pitr rq_p2;
drop pitr rq_p3;
drop pitr rq_p4;
drop pitr rq_p5;
drop pitr if exists rq_p5;
drop pitr rq_p5;
show pitr;
drop database rq_db;
drop account rq_acc1;
