//! End to end: real devices (`fieldsync-core` stores and sync clients over HTTP)
//! against the real server on a loopback port, on SQLite and on PostgreSQL.
//! Every scenario runs on both databases (`<scenario>::on_sqlite`, `::on_postgres`).

use std::sync::atomic::Ordering;

use fieldsync_core::model::visit::{self, Site, Visit, VisitStatus};
use fieldsync_core::model::{
    Account, Actor, DeviceTime, Location, RecordKind, Role, VisitReport, report,
};
use fieldsync_core::protocol::{self, PushRequest, RecordChanges};
use fieldsync_core::sync::{NoProgress, Session, SyncError, SyncOptions, Transport};
use fieldsync_core::{RecordId, automerge};
use fieldsync_server::db::records::NARROW_PULL_RANGE;
use fieldsync_test_support::{
    Device, SECRET, World, configured_kid, fast_options, on_both_databases, sign_jwt, unix_now,
};

on_both_databases!(
    concurrent_offline_edits_on_three_devices_converge_everywhere,
    resending_a_batch_changes_nothing,
    a_lost_push_answer_and_a_broken_pull_resume_without_loss_or_duplicates,
    a_rejected_record_leaves_the_rest_merged_and_shows_its_reason,
    an_expired_access_token_is_refreshed_during_sync,
    changes_under_another_actor_id_are_refused,
    a_device_offline_across_many_deletes_and_edits_converges,
    scope_keeps_other_reps_records_away_and_brings_referenced_accounts,
    a_server_that_lost_history_is_repaired_from_the_device,
    repair_answers_a_record_out_of_scope_like_one_that_does_not_exist,
    malformed_requests_get_a_clear_4xx,
    concurrent_pushes_never_let_a_cursor_skip_a_change,
    a_revoked_device_is_refused_at_its_next_request_and_wiped,
    dated_records_reach_a_rep_only_inside_the_window,
    dated_records_reach_a_rep_only_inside_the_window_after_a_busy_day,
    an_oversized_edit_is_refused_on_the_device_and_the_rest_lands,
    a_reassigned_visit_leaves_the_old_reps_phone_and_reaches_the_new_ones,
    a_manager_reviews_a_report_through_the_api_and_the_rep_sees_it_after_sync,
    reps_hold_the_last_visits_and_jobs_at_their_accounts_for_reference,
    a_phone_restored_from_an_old_backup_carries_an_edit_over_by_itself,
    a_change_with_a_wrong_checksum_is_refused_and_stored_records_load_everywhere,
);

on_both_databases!(
    a_flaky_network_converges_and_applies_nothing_twice,
    a_device_clock_days_ahead_is_recorded_as_given_and_changes_nothing_else,
);

// Scenarios that need the server as a separate process (to SIGKILL it).
on_both_databases!(as_a_process: a_server_killed_mid_write_loses_nothing_it_acknowledged);
on_both_databases!(as_a_process: a_restore_from_backup_is_repaired_from_the_devices);

const SITE: Site = Site {
    coords: None,
    radius_m: 100.0,
};

/// `ms` after the start of today (UTC): inside every role's download window.
fn t(ms: i64) -> DeviceTime {
    let now = DeviceTime::now_utc().at_ms;
    DeviceTime::utc(now - now.rem_euclid(86_400_000) + ms)
}

fn account(w: &World, dev: &Device, name: &str) -> RecordId {
    let a = Account {
        meta: w.meta_of(&dev.person),
        name: name.into(),
        account_type: "outlet".into(),
        account_status: "active".into(),
        code: None,
        price_list_id: None,
        visit_frequency_days: Some(14),
        locations: [(
            RecordId::new(),
            Location {
                name: "Main store".into(),
                address: "Rua Augusta 1, Lisboa".into(),
                coords: None,
                geofence_radius_m: 150.0,
                opening_hours: None,
            },
        )]
        .into_iter()
        .collect(),
    };
    dev.store().create(&a, t(0)).expect("create account")
}

fn plan_visit(w: &World, dev: &Device, account_id: RecordId, i: i64) -> RecordId {
    let v = Visit::planned(
        w.meta_of(&dev.person),
        account_id,
        t(i * 3_600_000),
        t(i * 3_600_000 + 1_800_000),
    );
    dev.store()
        .create_stateful(&v, &dev.actor, t(i))
        .expect("create visit")
}

fn heads(dev: &Device, id: RecordId) -> Vec<automerge::ChangeHash> {
    let mut doc = dev.store().doc(id).expect("device copy");
    let mut h = doc.heads();
    h.sort();
    h
}

fn server_heads(w: &World, id: RecordId) -> Vec<automerge::ChangeHash> {
    let mut doc = w.server_doc(id).expect("server copy");
    let mut h = doc.heads();
    h.sort();
    h
}

fn concurrent_offline_edits_on_three_devices_converge_everywhere(w: World) {
    let phone = w.device("ana");
    let tablet = w.device("ana");
    let manager = w.device("mona");
    let shop = account(&w, &phone, "Mercearia Lopes");
    let visits: Vec<RecordId> = (0..4).map(|i| plan_visit(&w, &phone, shop, i)).collect();
    assert_eq!(phone.sync().pushed, 5);
    assert_eq!(
        tablet.sync().primed,
        5,
        "the tablet is primed with everything ana holds"
    );
    assert_eq!(
        manager.sync().primed,
        5,
        "the manager is primed with the team's records"
    );

    // Everyone goes offline and edits.
    phone
        .store()
        .update::<Visit>(visits[0], t(10), |v| v.notes = "shelf photo taken".into())
        .expect("phone edit");
    tablet
        .store()
        .act(visits[0], |d| {
            visit::check_in(d, &tablet.actor, t(11), None, SITE)
        })
        .expect("check in");
    manager
        .store()
        .update::<Visit>(visits[0], t(12), |v| {
            v.instructions = Some("launch the summer range".into())
        })
        .expect("manager edit");
    manager
        .store()
        .update::<Visit>(visits[1], t(13), |v| v.notes = "call before".into())
        .expect("manager edit");
    phone
        .store()
        .update::<Visit>(visits[1], t(14), |v| {
            v.instructions = Some("collect payment".into())
        })
        .expect("phone edit");
    tablet.store().delete(visits[3], t(15)).expect("delete");
    phone
        .store()
        .update::<Visit>(visits[3], t(16), |v| {
            v.notes = "edited while deleted".into()
        })
        .expect("edit of a record deleted elsewhere");

    for _ in 0..2 {
        for d in [&phone, &tablet, &manager] {
            d.sync();
        }
    }
    for id in &visits {
        let server = server_heads(&w, *id);
        for d in [&phone, &tablet, &manager] {
            assert_eq!(heads(d, *id), server, "{} differs on {id}", d.person.email);
        }
    }
    let v: Visit = phone.store().read_stateful(visits[0]).expect("read");
    assert_eq!(
        (
            v.notes.as_str(),
            v.instructions.as_deref().unwrap_or(""),
            v.status
        ),
        (
            "shelf photo taken",
            "launch the summer range",
            VisitStatus::InProgress
        )
    );
    let v1: Visit = manager.store().read_stateful(visits[1]).expect("read");
    assert_eq!(
        (v1.notes.as_str(), v1.instructions.as_deref().unwrap_or("")),
        ("call before", "collect payment")
    );
    for d in [&phone, &tablet, &manager] {
        assert!(
            d.store()
                .doc(visits[3])
                .expect("tombstone kept")
                .is_deleted(),
            "the delete reached {}",
            d.person.email
        );
        assert_eq!(d.store().pending_changes().expect("pending"), 0);
    }
}

fn resending_a_batch_changes_nothing(w: World) {
    let phone = w.device("ana");
    let shop = account(&w, &phone, "Quiosque Sol");
    for i in 0..3 {
        plan_visit(&w, &phone, shop, i);
    }
    phone.net().duplicate_pushes.store(true, Ordering::SeqCst);
    let report = phone.sync();
    assert_eq!((report.pushed, report.rejected), (4, 0));
    let log = w.log_len();
    assert_eq!(log, 4, "one log entry per change, whatever the resends");

    // Replaying the exact bytes of the records again, by hand.
    let batch = PushRequest {
        batch: uuid::Uuid::now_v7(),
        records: vec![RecordChanges {
            id: shop,
            kind: RecordKind::Account,
            changes: phone
                .store()
                .doc(shop)
                .expect("doc")
                .automerge()
                .get_changes(&[])
                .iter()
                .map(|c| serde_bytes::ByteBuf::from(c.raw_bytes().to_vec()))
                .collect(),
        }],
        health: None,
        epochs: Vec::new(),
    };
    let token = phone.access_token();
    use fieldsync_core::sync::Transport as _;
    let resp = phone.net().push(&token, &batch).expect("push");
    assert!(matches!(
        resp.results[0].outcome,
        protocol::PushOutcome::Accepted { .. }
    ));
    assert_eq!(w.log_len(), log);
}

fn a_lost_push_answer_and_a_broken_pull_resume_without_loss_or_duplicates(w: World) {
    let options = SyncOptions {
        push_batch: 5,
        pull_page: 7,
        max_attempts: 1,
        ..fast_options()
    };
    let phone = w.device_with("ana", options.clone());
    let laptop = w.device_with("mona", options);
    let shop = account(&w, &phone, "Padaria Central");
    let visits: Vec<RecordId> = (0..19).map(|i| plan_visit(&w, &phone, shop, i)).collect();

    // The server commits the first batch but the answer never arrives: the sync
    // fails; the next one resends that batch (a no-op) and carries on.
    phone.net().lose_push_answers.store(1, Ordering::SeqCst);
    let err = phone.client.sync(&NoProgress).expect_err("answer lost");
    assert!(matches!(err, SyncError::Network(_)), "{err}");
    assert_eq!(w.log_len(), 5, "the first batch was committed");
    assert_eq!(phone.store().pending_changes().expect("pending"), 20);
    phone.sync();
    assert_eq!(phone.store().pending_changes().expect("pending"), 0);
    assert_eq!(w.log_len(), 20, "no change logged twice");

    // The manager's pull breaks after two pages; the next sync resumes from the
    // stored cursor.
    laptop.net().fail_pulls.store(true, Ordering::SeqCst);
    laptop.net().pulls_before_failure.store(0, Ordering::SeqCst);
    laptop
        .store()
        .set_cursor(0)
        .expect("start from the feed, not a prime");
    laptop.net().pulls_before_failure.store(2, Ordering::SeqCst);
    assert!(laptop.client.sync(&NoProgress).is_err());
    let cursor = laptop.store().cursor().expect("cursor").expect("set");
    assert_eq!(cursor, 14, "two pages of seven were applied and kept");
    laptop.net().fail_pulls.store(false, Ordering::SeqCst);
    let report = laptop.sync();
    assert_eq!(report.pulled, 6, "only what was left");
    for id in visits.iter().chain([&shop]) {
        assert_eq!(heads(&laptop, *id), server_heads(&w, *id));
    }
}

/// Ana's phone plans a visit at `shop`, writes its report and submits it, then syncs.
fn submitted_report(
    w: &World,
    phone: &Device,
    shop: RecordId,
    summary: &str,
) -> (RecordId, RecordId) {
    let visit_id = plan_visit(w, phone, shop, 1);
    let report_id = phone
        .store()
        .create_stateful(
            &VisitReport::new(w.meta("ana"), visit_id),
            &phone.actor,
            t(1),
        )
        .expect("report");
    phone
        .store()
        .update::<VisitReport>(report_id, t(2), |r| r.summary = summary.into())
        .expect("write");
    phone
        .store()
        .act(report_id, |d| report::submit(d, &phone.actor, t(3)))
        .expect("submit");
    phone.sync();
    (visit_id, report_id)
}

fn a_rejected_record_leaves_the_rest_merged_and_shows_its_reason(w: World) {
    let phone = w.device("ana");
    let shop = account(&w, &phone, "Drogaria Norte");
    let (visit_id, report_id) = submitted_report(&w, &phone, shop, "Met the owner.");

    // A rep's app claims to be a manager and approves its own report, next to
    // two honest edits.
    let forged = Actor {
        role: Role::Manager,
        ..phone.actor.clone()
    };
    phone
        .store()
        .act(report_id, |d| report::approve(d, &forged, t(4), None))
        .expect("the device's model trusts the role it is given");
    phone
        .store()
        .update::<Visit>(visit_id, t(5), |v| v.notes = "honest edit".into())
        .expect("edit");
    let other = plan_visit(&w, &phone, shop, 2);
    let report = phone.sync();
    assert_eq!((report.pushed, report.rejected), (2, 1));

    let ledger = phone.store().rejections().expect("ledger");
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].record_id, report_id);
    assert_eq!(ledger[0].code, "transition");
    assert!(!ledger[0].message.is_empty());
    let back: VisitReport = phone.store().read_stateful(report_id).expect("reset");
    assert_eq!(back.status, fieldsync_core::model::ReportStatus::Submitted);
    assert_eq!(heads(&phone, report_id), server_heads(&w, report_id));
    assert_eq!(
        w.server_doc(visit_id)
            .expect("merged")
            .read_stateful::<Visit>()
            .expect("visit")
            .notes,
        "honest edit"
    );
    assert!(w.server_doc(other).is_some());

    // The server's ledger has it too, with who and why.
    let token = phone.access_token();
    let body = ureq::get(format!("{}/v1/rejections", w.base))
        .header("authorization", format!("Bearer {token}"))
        .call()
        .expect("GET /v1/rejections")
        .into_body()
        .read_to_string()
        .expect("body");
    let rows: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(rows[0]["code"], "transition");
    assert_eq!(rows[0]["record_id"], report_id.to_string());
    assert_eq!(rows[0]["user_id"], phone.person.id.to_string());
    assert_eq!(rows[0]["changes"], 1);
}

fn an_expired_access_token_is_refreshed_during_sync(w: World) {
    let phone = w.device("ana");
    let session = phone.client.session().expect("session");
    // A correctly signed token that expired a minute ago.
    let now = unix_now();
    let claims = serde_json::json!({
        "sub": phone.person.id, "org": w.org, "role": "rep",
        "dev": phone.login.device.id, "iss": "fieldsync", "aud": "fieldsync-api",
        "iat": now - 1_000, "exp": now - 60,
    });
    let expired = sign_jwt(
        jsonwebtoken::Algorithm::HS256,
        Some(configured_kid(SECRET)),
        &claims,
        SECRET,
    );
    phone.client.set_session(Session {
        access_token: expired.clone(),
        refresh_token: session.refresh_token.clone(),
    });
    let shop = account(&w, &phone, "Café Rio");
    let report = phone.sync();
    assert_eq!(report.pushed, 1);
    let now_session = phone.client.session().expect("session");
    assert_ne!(now_session.access_token, expired);
    assert_ne!(now_session.refresh_token, session.refresh_token, "rotated");
    assert!(w.server_doc(shop).is_some());
}

fn changes_under_another_actor_id_are_refused(w: World) {
    let phone = w.device("ana");
    phone
        .store()
        .set_actor_id(automerge::ActorId::random())
        .expect("actor");
    let shop = account(&w, &phone, "Loja Azul");
    let report = phone.sync();
    assert_eq!((report.pushed, report.rejected), (0, 1));
    let ledger = phone.store().rejections().expect("ledger");
    assert_eq!(ledger[0].code, "foreign_actor");
    assert!(w.server_doc(shop).is_none(), "nothing of it was stored");
    assert_eq!(w.log_len(), 0);
}

fn a_device_offline_across_many_deletes_and_edits_converges(w: World) {
    let away = w.device("ana");
    let busy = w.device("ana");
    let shop = account(&w, &busy, "Supermercado Vale");
    let visits: Vec<RecordId> = (0..60).map(|i| plan_visit(&w, &busy, shop, i)).collect();
    busy.sync();
    away.sync();
    assert_eq!(
        away.store().all_of(RecordKind::Visit).expect("list").len(),
        60
    );

    // `away` edits some visits offline, with device times 60 days old by the
    // time it comes back.
    for id in &visits[0..10] {
        away.store()
            .update::<Visit>(*id, t(1), |v| v.notes = "written in the field".into())
            .expect("offline edit");
    }
    // Meanwhile the rest of the world deletes and edits, over many syncs.
    for (i, id) in visits.iter().enumerate() {
        if i % 2 == 0 {
            busy.store().delete(*id, t(100 + i as i64)).expect("delete");
        } else {
            busy.store()
                .update::<Visit>(*id, t(100 + i as i64), |v| {
                    v.instructions = Some(format!("round {i}"))
                })
                .expect("edit");
        }
        if i % 10 == 9 {
            busy.sync();
        }
    }
    busy.sync();
    let sixty_days_ms = 60 * 24 * 3_600_000;
    away.store()
        .update::<Visit>(visits[1], t(sixty_days_ms), |v| {
            v.notes = "back online".into()
        })
        .expect("edit");
    away.sync();
    busy.sync();
    for id in &visits {
        let server = server_heads(&w, *id);
        assert_eq!(heads(&away, *id), server);
        assert_eq!(heads(&busy, *id), server);
    }
    for (i, id) in visits.iter().enumerate() {
        let doc = away.store().doc(*id).expect("doc");
        assert_eq!(doc.is_deleted(), i % 2 == 0, "visit {i}");
    }
    let v: Visit = busy.store().read_stateful(visits[1]).expect("read");
    assert_eq!(
        (v.notes.as_str(), v.instructions.as_deref().unwrap_or("")),
        ("back online", "round 1")
    );
}

fn scope_keeps_other_reps_records_away_and_brings_referenced_accounts(w: World) {
    let ana = w.device("ana");
    let sara = w.device("sara");
    let mona = w.device("mona");
    let adam = w.device("adam");
    // Mona (North's manager) creates an account and plans a visit there for Ana.
    let shop = account(&w, &mona, "Tabacaria Lis");
    mona.sync();
    let v = Visit::planned(w.meta("ana"), shop, t(0), t(1_800_000));
    let visit_id = mona
        .store()
        .create_stateful(&v, &mona.actor, t(0))
        .expect("plan for ana");
    mona.sync();
    // Sara (South) plans her own visit.
    let sara_shop = account(&w, &sara, "Sara's outlet");
    let sara_visit = plan_visit(&w, &sara, sara_shop, 0);
    sara.sync();

    ana.sync();
    assert!(
        ana.store().doc(visit_id).is_ok(),
        "ana gets the visit planned for her"
    );
    assert!(
        ana.store().doc(shop).is_ok(),
        "and the account it refers to, though mona owns it"
    );
    assert!(ana.store().doc(sara_visit).is_err(), "not sara's visit");
    assert!(
        ana.store().doc(sara_shop).is_ok(),
        "but sara's account, a customer of the territory they share"
    );
    mona.sync();
    assert!(
        mona.store().doc(sara_visit).is_err(),
        "another team's manager sees nothing"
    );
    adam.sync();
    for id in [visit_id, shop, sara_visit, sara_shop] {
        assert!(
            adam.store().doc(id).is_ok(),
            "the administrator sees the organisation"
        );
    }

    // Ana may not write Sara's record even if she knows its id.
    let mut forged = sara.store().doc(sara_visit).expect("sara's copy");
    forged.set_actor(automerge::ActorId::from(
        hex::decode(&ana.login.device.actor_id).expect("hex"),
    ));
    let before = server_heads(&w, sara_visit);
    forged
        .update::<Visit>(t(9), |v| v.notes = "not mine".into())
        .expect("edit");
    let change = forged.automerge().get_last_local_change().expect("change");
    let token = ana.access_token();
    use fieldsync_core::sync::Transport as _;
    let resp = ana
        .net()
        .push(
            &token,
            &PushRequest {
                batch: uuid::Uuid::now_v7(),
                records: vec![RecordChanges {
                    id: sara_visit,
                    kind: RecordKind::Visit,
                    changes: vec![serde_bytes::ByteBuf::from(change.raw_bytes().to_vec())],
                }],
                health: None,
                epochs: Vec::new(),
            },
        )
        .expect("push");
    match &resp.results[0].outcome {
        protocol::PushOutcome::Rejected(r) => {
            assert_eq!(r.code, protocol::RejectCode::Forbidden);
            assert!(r.server_doc.is_none(), "nothing about the record leaks");
        }
        other => panic!("accepted: {other:?}"),
    }
    assert_eq!(server_heads(&w, sara_visit), before);

    // The audit trail: who changed the record, from which device, when; for
    // those who may read it, and a 404 for anyone else.
    let audit = |dev: &Device, id: RecordId| {
        let token = dev.access_token();
        let resp = ureq::get(format!("{}/v1/records/{id}/audit", w.base))
            .header("authorization", format!("Bearer {token}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("answer");
        let status = resp.status().as_u16();
        let body = resp.into_body().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default(),
        )
    };
    let (status, trail) = audit(&sara, sara_visit);
    assert_eq!(status, 200, "{trail}");
    let entries = trail.as_array().expect("entries");
    assert_eq!(entries.len(), 1, "one change: the creation");
    assert_eq!(entries[0]["user_id"], sara.person.id.to_string());
    assert_eq!(entries[0]["device_id"], sara.login.device.id.to_string());
    assert_eq!(entries[0]["user_name"], "sara");
    assert_eq!(
        audit(&adam, sara_visit).0,
        200,
        "administrators read every trail"
    );
    assert_eq!(
        audit(&ana, sara_visit).0,
        404,
        "not even its existence leaks"
    );
    let (status, mine) = audit(&ana, visit_id);
    assert_eq!(status, 200);
    assert_eq!(
        mine[0]["user_id"],
        w.person("mona").id.to_string(),
        "mona planned it"
    );
}

fn a_server_that_lost_history_is_repaired_from_the_device(w: World) {
    let phone = w.device("ana");
    let shop = account(&w, &phone, "Oficina Sul");
    let visit_id = plan_visit(&w, &phone, shop, 0);
    phone.sync();
    // The server is restored from a backup taken before the visit existed.
    for sql in [
        "DELETE FROM record_scope WHERE record_id = $1",
        "DELETE FROM change_log WHERE record_id = $1",
        "DELETE FROM records WHERE id = $1",
    ] {
        w.execute_with_id(sql, *visit_id.as_uuid());
    }
    assert!(w.server_doc(visit_id).is_none());
    // The device checks in: its new change builds on history the server lacks.
    phone
        .store()
        .act(visit_id, |d| {
            visit::check_in(d, &phone.actor, t(5), None, SITE)
        })
        .expect("check in");
    let report = phone.sync();
    assert_eq!(report.repaired, 1, "{report:?}");
    assert_eq!(phone.store().pending_changes().expect("pending"), 0);
    assert_eq!(heads(&phone, visit_id), server_heads(&w, visit_id));
    let v: Visit = w
        .server_doc(visit_id)
        .expect("restored")
        .read_stateful()
        .expect("visit");
    assert_eq!(v.status, VisitStatus::InProgress);
    // Another device sees the repaired record through the feed.
    let tablet = w.device("ana");
    tablet.sync();
    assert_eq!(heads(&tablet, visit_id), heads(&phone, visit_id));
}

fn a_change_with_a_wrong_checksum_is_refused_and_stored_records_load_everywhere(w: World) {
    use fieldsync_core::model::RecordDoc;
    use fieldsync_core::protocol::{PushOutcome, RejectCode};
    let phone = w.device("ana");
    let account = w.account_on(&phone, "Checksum Cafe");
    phone.sync();
    let planned = Visit::planned(w.meta("ana"), account, t(9 * HOUR), t(10 * HOUR));
    let mut doc = RecordDoc::create_stateful(&planned, phone.actor_id(), &phone.actor, t(0))
        .expect("a visit");
    let id = doc.id();
    let mut made: Vec<Vec<u8>> = doc
        .changes_since(&[])
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    // A raw client's change whose header checksum is not its hash's:
    // Automerge would apply it, and refuse to load any file holding it.
    made[0][4] ^= 0xff;
    match phone.push_bytes(id, RecordKind::Visit, made.clone()) {
        PushOutcome::Rejected(r) => {
            assert_eq!(r.code, RejectCode::InvalidChange);
            assert!(r.message.contains("checksum"), "{}", r.message);
        }
        other => panic!("a wrong checksum was accepted: {other:?}"),
    }
    assert!(w.server_doc(id).is_none(), "nothing of it was stored");
    // As made, it is accepted; then one edit a push, past a compaction: the
    // server stores the changes appended, then a checked save, then appends
    // again, and every form loads on the server and on a device primed from it.
    made[0][4] ^= 0xff;
    assert!(matches!(
        phone.push_bytes(id, RecordKind::Visit, made),
        PushOutcome::Accepted { .. }
    ));
    for n in 0..20 {
        let copy = w.server_doc(id).expect("the server's copy loads");
        let out = phone.push_forged(copy, |d| {
            d.update::<Visit>(t(HOUR + n), |v| v.notes = format!("gate code {n}"))
                .expect("an edit");
        });
        assert!(matches!(out, PushOutcome::Accepted { .. }), "{out:?}");
    }
    let held = w.server_doc(id).expect("the server's copy loads");
    let notes = held.read::<Visit>().expect("a visit").notes;
    assert_eq!(notes, "gate code 19");
    let tablet = w.device("ana");
    tablet.sync();
    assert_eq!(heads(&tablet, id), server_heads(&w, id));
    assert_eq!(
        tablet.store().read::<Visit>(id).expect("primed").notes,
        "gate code 19"
    );
}

fn malformed_requests_get_a_clear_4xx(w: World) {
    let phone = w.device("ana");
    let token = phone.access_token();
    let post = |content_type: &str, version: Option<&str>, body: &[u8]| {
        let mut req = ureq::post(format!("{}/v1/sync/push", w.base))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .config()
            .http_status_as_error(false)
            .build();
        if let Some(v) = version {
            req = req.header(protocol::PROTOCOL_HEADER, v);
        }
        let resp = req.send(body).expect("answer");
        let status = resp.status().as_u16();
        let body = resp.into_body().read_to_string().unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        (
            status,
            json["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    };
    assert_eq!(
        post("application/cbor", None, b"\xff\x00garbage"),
        (400, "invalid_message".into())
    );
    assert_eq!(
        post("application/json", None, b"{}"),
        (415, "unsupported_media_type".into())
    );
    assert_eq!(
        post("application/cbor", Some("0"), &[]),
        (426, "protocol_unsupported".into())
    );
    // Deeply nested CBOR is refused, not followed.
    let nested: Vec<u8> = std::iter::repeat_n(0x81u8, 10_000).chain([0x00]).collect();
    assert_eq!(post("application/cbor", None, &nested).0, 400);
    // Well-formed message, garbage change bytes: a per-record refusal.
    let bad = PushRequest {
        batch: uuid::Uuid::now_v7(),
        records: vec![RecordChanges {
            id: RecordId::new(),
            kind: RecordKind::Visit,
            changes: vec![serde_bytes::ByteBuf::from(vec![
                0x85, 0x6f, 0x4a, 0x83, 1, 2,
            ])],
        }],
        health: None,
        epochs: Vec::new(),
    };
    let resp = ureq::post(format!("{}/v1/sync/push", w.base))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/cbor")
        .send(&protocol::encode(&bad)[..])
        .expect("200");
    let bytes = resp.into_body().read_to_vec().expect("body");
    let answer: protocol::PushResponse = protocol::decode(&bytes).expect("decode");
    match &answer.results[0].outcome {
        protocol::PushOutcome::Rejected(r) => {
            assert_eq!(r.code, protocol::RejectCode::InvalidChange)
        }
        other => panic!("accepted garbage: {other:?}"),
    }
    // No token at all.
    let resp = ureq::post(format!("{}/v1/sync/pull", w.base))
        .header("content-type", "application/cbor")
        .config()
        .http_status_as_error(false)
        .build()
        .send(
            &protocol::encode(&protocol::PullRequest {
                log: None,
                history: None,
                cursor: 0,
                max_changes: 10,
                window: None,
                health: None,
            })[..],
        )
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 401);
    // The server is still fine.
    assert!(phone.client.sync(&NoProgress).is_ok());
}

fn concurrent_pushes_never_let_a_cursor_skip_a_change(w: World) {
    let writers: Vec<Device> = ["ana", "ben", "carla", "ana", "ben", "carla"]
        .iter()
        .map(|n| w.device(n))
        .collect();
    let reader = w.device_with(
        "mona",
        SyncOptions {
            pull_page: 3,
            ..fast_options()
        },
    );
    reader.sync();
    let finished = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for d in &writers {
            let finished = &finished;
            let w = &w;
            s.spawn(move || {
                let shop = account(w, d, "Concurrent outlet");
                for i in 0..12 {
                    let id = plan_visit(w, d, shop, i);
                    d.store()
                        .update::<Visit>(id, t(i), |v| v.notes = format!("edit {i}"))
                        .expect("edit");
                    d.sync();
                }
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        // The manager pulls in small pages while the writers commit: if a
        // sequence could become visible before a smaller one, its cursor would
        // pass the smaller one and never see it.
        s.spawn(|| {
            while finished.load(Ordering::SeqCst) < writers.len() {
                // A sync refused by the per-device rate limit just runs again.
                let _ = reader.client.sync(&NoProgress);
            }
        });
    });
    reader.sync();
    assert_eq!(w.scalar("SELECT COUNT(*) FROM records"), 6 * 13);
    let visits = reader.store().all_of(RecordKind::Visit).expect("list");
    assert_eq!(visits.len(), 6 * 12, "the manager holds every visit");
    for v in visits {
        assert_eq!(heads(&reader, v.id), server_heads(&w, v.id), "{}", v.id);
    }
}

/// The server is SIGKILLed and restarted `FIELDSYNC_KILL_ROUNDS` times (10;
/// `cargo xtask soak` runs 300) while sixteen devices (the four seeded people
/// and twelve more reps) sync.
fn a_server_killed_mid_write_loses_nothing_it_acknowledged(w: World) {
    let kills: u64 = std::env::var("FIELDSYNC_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    under_load(&w, 16, || {
        for round in 0..kills {
            std::thread::sleep(std::time::Duration::from_millis(200 + 50 * (round % 5)));
            w.kill_and_restart_server();
        }
        println!("server kill loop: {kills} kills survived");
    });
}

/// PostgreSQL itself crashes and comes back (an immediate stop cuts every
/// connection mid-statement; the start runs crash recovery) three times while
/// four devices sync: the server rides it out without a restart of its own,
/// the devices retry, and nothing acknowledged is lost.
#[test]
fn a_postgres_restart_under_load_loses_nothing_and_needs_no_server_restart() {
    let cluster = fieldsync_test_support::PgCluster::dedicated();
    let url = cluster.new_database();
    let w = World::start_with(fieldsync_test_support::Backend::Postgres, |s| {
        s.database_url = Some(url);
    });
    under_load(&w, 4, || {
        for round in 0..3 {
            std::thread::sleep(std::time::Duration::from_millis(400 + 150 * round));
            cluster.restart();
        }
    });
    let log = cluster.log();
    assert!(
        log.matches("not properly shut down; automatic recovery")
            .count()
            >= 3,
        "PostgreSQL went down and came back three times:\n{log}"
    );
    // The same server, never restarted, still answers.
    let health = ureq::get(&format!("{}/healthz", w.base))
        .call()
        .expect("healthz after the database came back");
    assert_eq!(health.status().as_u16(), 200);
}

/// The server's database goes back to a backup taken before some changes
/// both devices had sent (and the server had acknowledged). On SQLite with
/// `fieldsync backup` and `fieldsync restore`; on PostgreSQL the rows written
/// since are deleted (what a `pg_restore` would do to them) and the operator
/// runs `fieldsync mark-restored`. At their next sync both devices notice the
/// change log's new identity and bring everything back.
fn a_restore_from_backup_is_repaired_from_the_devices(w: World) {
    use fieldsync_test_support::fieldsync;
    let ana = w.device("ana");
    let ben = w.device("ben");
    let shop = account(&w, &ana, "Backup outlet");
    let before = plan_visit(&w, &ana, shop, 0);
    ana.sync();
    ben.sync();
    let sqlite = w.settings.database_url.is_none();
    let backup = w.data_dir().with_file_name("backup.db");
    let data_dir = w.data_dir().to_str().expect("utf-8").to_owned();
    let mut db_args = vec!["--data-dir".to_owned(), data_dir];
    db_args.extend(w.database_args());
    let seq_at_backup = w.scalar("SELECT COALESCE(MAX(seq), 0) FROM change_log");
    if sqlite {
        let mut args = vec!["backup".to_owned(), "--to".to_owned()];
        args.push(backup.to_str().expect("utf-8").to_owned());
        args.extend(db_args.clone());
        let out = fieldsync(&args, &[], None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // After the backup: both devices send changes the server acknowledges.
    ana.store()
        .update::<Visit>(before, t(1), |v| v.notes = "after the backup".into())
        .expect("edit");
    let ana_new = plan_visit(&w, &ana, shop, 1);
    ana.sync();
    let ben_new = plan_visit(&w, &ben, shop, 2);
    ben.sync();
    assert_eq!(ana.store().pending_changes().expect("pending"), 0);
    assert_eq!(ben.store().pending_changes().expect("pending"), 0);

    w.restart_server_after(|| {
        if sqlite {
            let mut args = vec!["restore".to_owned(), "--from".to_owned()];
            args.push(backup.to_str().expect("utf-8").to_owned());
            args.extend(db_args.clone());
            let out = fieldsync(&args, &[], None);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stdout).contains("devices bring back"));
        } else {
            for sql in [
                "DELETE FROM record_scope WHERE record_id IN (SELECT record_id FROM change_log \
                 WHERE seq > $1 AND record_id NOT IN (SELECT record_id FROM change_log WHERE seq <= $1))",
                "DELETE FROM records WHERE id IN (SELECT record_id FROM change_log \
                 WHERE seq > $1 AND record_id NOT IN (SELECT record_id FROM change_log WHERE seq <= $1))",
                "DELETE FROM change_log WHERE seq > $1",
            ] {
                w.execute_with_seq(sql, seq_at_backup);
            }
            let mut args = vec!["mark-restored".to_owned(), "--reason".to_owned(), "test".to_owned()];
            args.extend(db_args.clone());
            let out = fieldsync(&args, &[], None);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    });
    assert!(w.server_doc(ana_new).is_none() && w.server_doc(ben_new).is_none());

    let report = ana.sync();
    assert!(report.server_restored, "{report:?}");
    let report = ben.sync();
    assert!(report.server_restored, "{report:?}");
    ana.sync();
    // Each holds what they may read (the shop is the territory's; the visits
    // their own), as the server has it again.
    for (dev, ids) in [
        (&ana, vec![shop, before, ana_new]),
        (&ben, vec![shop, ben_new]),
    ] {
        for id in ids {
            assert_eq!(
                heads(dev, id),
                server_heads(&w, id),
                "{} on {id}",
                dev.person.name()
            );
        }
    }
    let v: Visit = w
        .server_doc(before)
        .expect("back")
        .read_stateful()
        .expect("visit");
    assert_eq!(v.notes, "after the backup");
    let metrics = ureq::get(&format!("{}/metrics", w.base))
        .call()
        .expect("metrics")
        .into_body()
        .read_to_string()
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("fieldsync_devices_after_restore_total ") && !l.ends_with(" 0")),
        "the server counts devices after the restore"
    );
}

/// A phone whose clock runs three days ahead: the times it records are kept
/// as the device gave them (a check-in says when the phone thought it was),
/// while what the server orders and cuts by runs on the server's clock: the
/// change log's commit times, and the download window the phone receives.
fn a_device_clock_days_ahead_is_recorded_as_given_and_changes_nothing_else(w: World) {
    const SKEW: i64 = 3 * 86_400_000;
    let phone = w.device("ana");
    let shop = account(&w, &phone, "Relógio adiantado");
    let visit_id = plan_visit(&w, &phone, shop, 0);
    let skewed = DeviceTime::utc(DeviceTime::now_utc().at_ms + SKEW);
    phone
        .store()
        .act(visit_id, |d| {
            visit::check_in(d, &phone.actor, skewed, None, SITE)
        })
        .expect("check in");
    let before = fieldsync_test_support::unix_now();
    phone.sync();
    let after = fieldsync_test_support::unix_now();

    // Recorded as given.
    let history = w
        .server_doc(visit_id)
        .expect("on the server")
        .history()
        .expect("history");
    let check_in = history
        .iter()
        .find(|e| e.to == "in_progress")
        .expect("the check-in event");
    assert_eq!(check_in.at, skewed);
    // Committed on the server's clock.
    let audit = ureq::get(&format!("{}/v1/records/{visit_id}/audit", w.base))
        .header("authorization", &format!("Bearer {}", phone.access_token()))
        .call()
        .expect("audit")
        .into_body()
        .read_json::<serde_json::Value>()
        .expect("json");
    let entries = audit.as_array().cloned().unwrap_or_default();
    assert!(!entries.is_empty(), "{audit}");
    for e in &entries {
        let at = e["committed_at"].as_i64().expect("committed_at");
        assert!((before - 5..=after + 5).contains(&at), "{e}");
    }
    // The window is the server's: it ends seven days after the server's today,
    // not after the phone's.
    let window = phone
        .store()
        .meta_get("scope_window")
        .expect("meta")
        .expect("a window");
    let to: i64 = window
        .split_once(',')
        .and_then(|(_, to)| to.parse().ok())
        .expect("the window's end");
    assert_eq!(to, t(0).at_ms + 8 * 86_400_000);
}

/// Four devices sync through a proxy that resets, loses, truncates,
/// duplicates and delays about one request in three, for a few hundred sync
/// rounds (`FIELDSYNC_FLAKY_ROUNDS`; `cargo xtask soak` runs a thousand),
/// planning and editing visits between rounds. Afterwards the network heals:
/// every acknowledged change is on the server, every device agrees with it,
/// and the change log holds each change once.
fn a_flaky_network_converges_and_applies_nothing_twice(w: World) {
    use fieldsync_test_support::{FaultMix, FaultyProxy};
    let rounds: usize = std::env::var("FIELDSYNC_FLAKY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let proxy = FaultyProxy::start(&w.base, FaultMix::ROUGH, 0x5EED);
    proxy.faults_on.store(false, Ordering::SeqCst);
    let devices: Vec<Device> = ["ana", "ben", "carla", "mona"]
        .iter()
        .map(|n| {
            w.device_via(
                w.person(n),
                &proxy.base,
                SyncOptions {
                    max_attempts: 2,
                    ..fast_options()
                },
            )
        })
        .collect();
    let shops: Vec<RecordId> = devices
        .iter()
        .map(|d| account(&w, d, "Flaky outlet"))
        .collect();
    proxy.faults_on.store(true, Ordering::SeqCst);
    let mut acked: Vec<(RecordId, Vec<automerge::ChangeHash>)> = Vec::new();
    let mut mine: Vec<Vec<RecordId>> = shops.iter().map(|s| vec![*s]).collect();
    let (mut ok, mut failed) = (0, 0);
    for round in 0..rounds {
        let k = round % devices.len();
        let d = &devices[k];
        let i = round as i64;
        if round % 3 == 0 || mine[k].len() < 2 {
            mine[k].push(plan_visit(&w, d, shops[k], i));
        } else {
            let id = mine[k][1 + (round / 4) % (mine[k].len() - 1)];
            d.store()
                .update::<Visit>(id, t(i), |v| v.notes = format!("round {round}"))
                .expect("edit");
        }
        match d.client.sync(&NoProgress) {
            Ok(_) if d.store().pending_changes().expect("pending") == 0 => {
                ok += 1;
                for id in &mine[k] {
                    acked.push((*id, heads(d, *id)));
                }
            }
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    let counts = &proxy.counts;
    println!(
        "flaky network: {rounds} sync rounds ({ok} completed, {failed} failed), {} requests, \
         {} faults: {} resets, {} lost answers, {} truncated, {} duplicated, {} delayed",
        counts.requests.load(Ordering::SeqCst),
        counts.faults(),
        counts.resets.load(Ordering::SeqCst),
        counts.lost_answers.load(Ordering::SeqCst),
        counts.truncated.load(Ordering::SeqCst),
        counts.duplicated.load(Ordering::SeqCst),
        counts.delayed.load(Ordering::SeqCst),
    );
    assert!(counts.faults() > rounds as u64 / 10, "faults were injected");
    assert!(ok > 0, "some syncs got through");

    proxy.faults_on.store(false, Ordering::SeqCst);
    for d in &devices {
        d.sync();
    }
    for d in &devices {
        d.sync();
        assert_eq!(d.store().pending_changes().expect("pending"), 0);
        for p in d.store().all_of(RecordKind::Visit).expect("list") {
            assert_eq!(heads(d, p.id), server_heads(&w, p.id), "{}", p.id);
        }
    }
    for (id, heads_then) in &acked {
        let mut doc = w.server_doc(*id).expect("acknowledged record kept");
        for h in heads_then {
            assert!(
                doc.automerge().get_change_by_hash(h).is_some(),
                "an acknowledged change of {id} was lost"
            );
        }
    }
    // Each change once: the log holds exactly the changes the documents hold.
    let ids: Vec<RecordId> = mine.iter().flatten().copied().collect();
    let in_docs: usize = ids
        .iter()
        .map(|id| {
            w.server_doc(*id)
                .expect("on the server")
                .changes_since(&[])
                .len()
        })
        .sum();
    assert_eq!(
        w.scalar("SELECT COUNT(*) FROM change_log") as usize,
        in_docs,
        "a change was logged twice (or a logged change is missing from its record)"
    );
}

/// `count` devices (the four seeded people first, then more reps of the
/// north team) plan and edit visits and sync in a loop while `disrupt` runs;
/// afterwards every change acknowledged before the disruption is on the
/// server, and once everyone syncs again, devices and server agree.
fn under_load(w: &World, count: usize, disrupt: impl FnOnce()) {
    let people: Vec<fieldsync_test_support::Person> = ["ana", "ben", "carla", "mona"]
        .iter()
        .map(|n| w.person(n))
        .chain((4..count).map(|i| w.add_person(&format!("rep{i:02}"), Role::Rep, w.north)))
        .take(count)
        .collect();
    let devices: Vec<Device> = people
        .into_iter()
        .map(|p| {
            w.device_of(
                p,
                SyncOptions {
                    max_attempts: 2,
                    ..fast_options()
                },
            )
        })
        .collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acknowledged = std::sync::Mutex::new(Vec::<(RecordId, Vec<automerge::ChangeHash>)>::new());
    std::thread::scope(|s| {
        for d in &devices {
            let (stop, acknowledged) = (&stop, &acknowledged);
            s.spawn(move || {
                let shop = account(w, d, "Kill test outlet");
                let mut mine = vec![shop];
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let id = plan_visit(w, d, shop, i);
                    mine.push(id);
                    d.store()
                        .update::<Visit>(id, t(i), |v| v.notes = format!("note {i}"))
                        .expect("edit");
                    // A sync that returns Ok with nothing pending means the
                    // server acknowledged every change so far.
                    if d.client.sync(&NoProgress).is_ok()
                        && d.store().pending_changes().expect("pending") == 0
                    {
                        let mut acked = acknowledged.lock().expect("lock");
                        for id in &mine {
                            acked.push((*id, heads(d, *id)));
                        }
                    }
                }
            });
        }
        disrupt();
        std::thread::sleep(std::time::Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
    });
    let acked = acknowledged.into_inner().expect("lock");
    assert!(
        !acked.is_empty(),
        "some syncs succeeded between the disruptions"
    );
    // Everything acknowledged is on the server, at least as far as it was then.
    for (id, heads_then) in &acked {
        let mut doc = w.server_doc(*id).expect("acknowledged record kept");
        for h in heads_then {
            assert!(
                doc.automerge().get_change_by_hash(h).is_some(),
                "an acknowledged change of {id} was lost"
            );
        }
    }
    // And once everyone syncs again, every device and the server agree.
    for d in &devices {
        d.sync();
    }
    for d in &devices {
        d.sync();
        assert_eq!(d.store().pending_changes().expect("pending"), 0);
        for p in d.store().all_of(RecordKind::Visit).expect("list") {
            assert_eq!(heads(d, p.id), server_heads(w, p.id));
        }
    }
}

fn a_revoked_device_is_refused_at_its_next_request_and_wiped(w: World) {
    let phone = w.device("ana");
    let mona = w.device("mona");
    let ben = w.device("ben");
    let shop = account(&w, &phone, "Loja Revogada");
    phone.sync();
    let call = |dev: &Device, method: &str, path: &str| {
        let token = dev.access_token();
        let url = format!("{}{path}", w.base);
        let req = match method {
            "GET" => ureq::get(url)
                .header("authorization", format!("Bearer {token}"))
                .config()
                .http_status_as_error(false)
                .build()
                .call(),
            _ => ureq::post(url)
                .header("authorization", format!("Bearer {token}"))
                .config()
                .http_status_as_error(false)
                .build()
                .send_empty(),
        };
        let resp = req.expect("answer");
        let status = resp.status().as_u16();
        let body = resp.into_body().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default(),
        )
    };
    let ana_id = phone.person.id;
    let device_id = phone.login.device.id;
    // The manager of ana's team lists her devices; another rep may not.
    let (status, list) = call(&mona, "GET", &format!("/v1/devices?user={ana_id}"));
    assert_eq!(status, 200, "{list}");
    let listed = list.as_array().expect("array");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], device_id.to_string());
    assert_eq!(listed[0]["app_version"], "0.1.0");
    assert!(listed[0]["revoked_at"].is_null());
    let (status, _) = call(&ben, "GET", &format!("/v1/devices?user={ana_id}"));
    assert_eq!(status, 403);
    let (status, _) = call(&ben, "POST", &format!("/v1/devices/{device_id}/revoke"));
    assert_eq!(
        status, 404,
        "another rep cannot even tell the device exists"
    );
    // Ana's own list shows it too.
    let (status, own) = call(&phone, "GET", "/v1/devices");
    assert_eq!((status, own.as_array().map(Vec::len)), (200, Some(1)));

    let (status, body) = call(&mona, "POST", &format!("/v1/devices/{device_id}/revoke"));
    assert_eq!((status, &body["revoked"]), (200, &serde_json::json!(true)));

    // The phone made an edit offline; its next sync is refused at the first
    // request and the local data is wiped.
    phone
        .store()
        .update::<Account>(shop, t(1), |a| a.name = "never sent".into())
        .expect("edit");
    phone.net().reset_counters();
    let err = phone.client.sync(&NoProgress).expect_err("revoked");
    assert!(matches!(err, SyncError::Revoked), "{err}");
    assert_eq!(phone.net().counters().0, 1, "refused within one request");
    assert!(
        phone
            .store()
            .all_of(RecordKind::Account)
            .expect("list")
            .is_empty()
    );
    assert_eq!(phone.store().pending_changes().expect("pending"), 0);
    assert!(phone.client.session().is_none());
    let (status, list) = call(&mona, "GET", &format!("/v1/devices?user={ana_id}"));
    assert_eq!(status, 200);
    assert!(list[0]["revoked_at"].is_i64());
}

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// The default rep window: yesterday to the end of the seventh day ahead.
fn dated_records_reach_a_rep_only_inside_the_window(w: World) {
    window_scenario(&w, false);
}

/// The same after a busy day before each of the rep's syncs: more than
/// `NARROW_PULL_RANGE` changes of a colleague's since its cursor, so its pull
/// starts from the records it reads (on PostgreSQL too, where a short range
/// walks the feed) and still receives exactly what it reads.
fn dated_records_reach_a_rep_only_inside_the_window_after_a_busy_day(w: World) {
    window_scenario(&w, true);
}

fn window_scenario(w: &World, busy: bool) {
    let mona = w.device("mona");
    let ana = w.device("ana");
    let sara = w.device("sara");
    let sara_shop = account(w, &sara, "Drogaria Sara");
    let sara_visit = plan_visit(w, &sara, sara_shop, 1);
    sara.sync();
    // Sara's working day: her own visit edited past the narrow threshold.
    let mut edits = 0;
    let mut busy_day = || {
        if busy {
            for _ in 0..=NARROW_PULL_RANGE {
                edits += 1;
                sara.store()
                    .update::<Visit>(sara_visit, t(edits), |v| {
                        v.notes = format!("shelf count {edits}")
                    })
                    .expect("sara's edit");
            }
            assert_eq!(sara.sync().rejected, 0);
        }
    };
    let shop = account(w, &mona, "Loja do Bairro");
    // The manager plans ana's visits from three days ago to ten days ahead.
    let days = [-3i64, -1, 0, 2, 7, 8, 10];
    let plan = |day: i64| {
        let v = Visit::planned(
            w.meta("ana"),
            shop,
            t(day * DAY_MS + 9 * HOUR_MS),
            t(day * DAY_MS + 10 * HOUR_MS),
        );
        mona.store()
            .create_stateful(&v, &mona.actor, t(0))
            .expect("plan visit")
    };
    let visits: std::collections::BTreeMap<i64, RecordId> =
        days.iter().map(|d| (*d, plan(*d))).collect();
    assert_eq!(mona.sync().pushed, 8);
    let holds = |dev: &Device, id: RecordId| dev.store().doc(id).is_ok();

    // Priming: the visits from yesterday to day +7, and the account they refer to.
    busy_day();
    let report = ana.sync();
    assert_eq!(
        report.primed, 6,
        "four visits in the window, their account and sara's (the territory's)"
    );
    for (day, id) in &visits {
        assert_eq!(
            holds(&ana, *id),
            (-1..=7).contains(day),
            "visit on day {day} is on ana's phone only inside the window"
        );
    }
    assert!(holds(&ana, shop));
    // The manager (no window by default) holds all of them.
    assert!(visits.values().all(|id| holds(&mona, *id)));

    // A visit edited while out of the window, then moved into it, arrives whole.
    let moved_in = visits[&10];
    for (i, note) in ["bring the new price list", "ask for the buyer"]
        .iter()
        .enumerate()
    {
        mona.store()
            .update::<Visit>(moved_in, t(i as i64), |v| v.notes = (*note).into())
            .expect("edit");
        mona.sync();
    }
    assert!(!holds(&ana, moved_in));
    mona.store()
        .update::<Visit>(moved_in, t(5), |v| {
            v.planned_start = Some(t(3 * DAY_MS + 9 * HOUR_MS));
            v.planned_end = Some(t(3 * DAY_MS + 10 * HOUR_MS));
        })
        .expect("reschedule");
    // And an edit of a visit the phone holds, which reaches it through the feed.
    mona.store()
        .update::<Visit>(visits[&2], t(5), |v| v.notes = "call ahead".into())
        .expect("edit");
    mona.sync();
    busy_day();
    ana.sync();
    let arrived: Visit = ana
        .store()
        .read(moved_in)
        .expect("the rescheduled visit arrived whole");
    assert_eq!(arrived.notes, "ask for the buyer");
    let edited: Visit = ana.store().read(visits[&2]).expect("held");
    assert_eq!(edited.notes, "call ahead");
    assert_eq!(heads(&ana, moved_in), server_heads(w, moved_in));

    // A visit moved out of the window leaves the phone.
    let moved_out = visits[&0];
    mona.store()
        .update::<Visit>(moved_out, t(6), |v| {
            v.planned_start = Some(t(20 * DAY_MS));
            v.planned_end = Some(t(20 * DAY_MS + HOUR_MS));
        })
        .expect("reschedule");
    mona.sync();
    busy_day();
    let report = ana.sync();
    assert_eq!(report.removed, 1, "{report:?}");
    assert!(!holds(&ana, moved_out));
    assert!(holds(&ana, visits[&2]), "the rest stays");

    // Time moves on: the phone last synced with a window two days earlier.
    // Visits that entered since come whole; those that left are named.
    let session = ana.client.session().expect("session");
    let today = t(0).at_ms;
    let old = protocol::ScopeWindow {
        from_ms: today - 3 * DAY_MS,
        to_ms: today + 6 * DAY_MS,
    };
    let cursor = ana.store().cursor().expect("cursor").expect("primed");
    busy_day();
    let page = ana
        .client
        .transport()
        .pull(
            &session.access_token,
            &protocol::PullRequest {
                log: None,
                history: None,
                cursor,
                max_changes: 1_000,
                window: Some(old),
                health: None,
            },
        )
        .expect("pull");
    let window = page.window.expect("a rep's pull names its window");
    assert_eq!(window.from_ms, today - DAY_MS);
    assert_eq!(window.to_ms, today + 8 * DAY_MS);
    assert_eq!(
        page.removed,
        vec![visits[&-3]],
        "day -3 was in the old window and is not in today's"
    );
    let entered = page
        .records
        .iter()
        .find(|r| r.id == visits[&7])
        .expect("day +7 entered the window: its history is sent");
    let mut copy = automerge::AutoCommit::new();
    copy.apply_changes(
        entered
            .changes
            .iter()
            .map(|c| automerge::Change::from_bytes(c.to_vec()).expect("change")),
    )
    .expect("apply");
    let mut got = copy.get_heads();
    got.sort();
    assert_eq!(got, server_heads(w, visits[&7]), "the whole history");
    assert!(
        page.records.iter().all(|r| r.id != visits[&8]),
        "day +8 is still outside"
    );
    assert!(
        page.records.iter().all(|r| r.id != sara_visit),
        "nothing of sara's day"
    );

    // A new phone is primed with today's window only.
    let fresh = w.device("ana");
    busy_day();
    fresh.sync();
    for (day, id) in &visits {
        let expected = match *day {
            0 => false,
            10 => true,
            d => (-1..=7).contains(&d),
        };
        assert_eq!(holds(&fresh, *id), expected, "day {day} on a new phone");
    }
    for phone in [&ana, &fresh] {
        assert!(!holds(phone, sara_visit), "sara's visit stays hers");
        assert!(holds(phone, sara_shop), "her account is the territory's");
    }
}

/// 1.5 MB of notes that do not compress (a pasted document, say) are 1.5
/// million text operations: more than one change may hold (the server would
/// refuse it for good, `MAX_CHANGE_OPS`), so the device refuses the edit
/// itself, with the reason, and queues nothing; the other edit syncs. (The
/// server's own refusals of an oversized record are tested with hand-built
/// pushes: `domain::push` and `tests/hardening.rs`.)
fn an_oversized_edit_is_refused_on_the_device_and_the_rest_lands(w: World) {
    let phone = w.device("ana");
    let shop = account(&w, &phone, "Quiosque Sol");
    let big = plan_visit(&w, &phone, shop, 1);
    let small = plan_visit(&w, &phone, shop, 2);
    phone.sync();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let noise: String = (0..1_500_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let pending = phone.store().pending_changes().expect("pending");
    let err = phone
        .store()
        .update::<Visit>(big, t(3), |v| v.notes = noise)
        .expect_err("refused on the device");
    assert!(err.to_string().contains("at most 100000"), "{err}");
    assert_eq!(
        phone.store().pending_changes().expect("pending"),
        pending,
        "nothing of it was queued"
    );
    phone
        .store()
        .update::<Visit>(small, t(4), |v| v.notes = "ordinary note".into())
        .expect("local edit");
    let before = server_heads(&w, big);
    let report = phone.sync();
    assert_eq!((report.pushed, report.rejected), (1, 0), "{report:?}");
    assert_eq!(server_heads(&w, big), before, "nothing of it was stored");
    assert_eq!(heads(&phone, small), server_heads(&w, small));
}

fn a_reassigned_visit_leaves_the_old_reps_phone_and_reaches_the_new_ones(w: World) {
    let mona = w.device("mona");
    let ana = w.device("ana");
    let ben = w.device("ben");
    let shop = account(&w, &mona, "Tabacaria Lis");
    let v = Visit::planned(w.meta("ana"), shop, t(9 * HOUR_MS), t(10 * HOUR_MS));
    let visit = mona
        .store()
        .create_stateful(&v, &mona.actor, t(0))
        .expect("plan");
    mona.store()
        .update::<Visit>(visit, t(1), |v| v.instructions = Some("new range".into()))
        .expect("edit");
    mona.sync();
    ana.sync();
    ben.sync();
    let holds = |dev: &Device| dev.store().doc(visit).is_ok();
    assert!(holds(&ana));
    assert!(!holds(&ben));

    // The manager gives the visit to ben.
    let ben_id = w.person("ben").id;
    mona.store()
        .update::<Visit>(visit, t(2), |v| v.meta.owner = ben_id)
        .expect("reassign");
    let report = mona.sync();
    assert_eq!((report.pushed, report.rejected), (1, 0), "{report:?}");

    let report = ana.sync();
    assert_eq!(report.removed, 1, "{report:?}");
    assert!(!holds(&ana), "the visit left ana's phone");
    let report = ben.sync();
    assert!(report.pulled >= 3, "the whole history: {report:?}");
    assert!(holds(&ben));
    assert_eq!(heads(&ben, visit), server_heads(&w, visit));
    let got: Visit = ben.store().read(visit).expect("read");
    assert_eq!(got.meta.owner, ben_id);
    assert_eq!(got.instructions.as_deref(), Some("new range"));

    // Ana's phone can no longer read or write it.
    let again = ana.sync();
    assert_eq!(again.removed, 0, "told once");
    assert!(!holds(&ana));
}

/// A JSON request with a bearer token: status and body.
fn api(
    w: &World,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}{path}", w.base);
    let auth = format!("Bearer {token}");
    let resp = match (method, body) {
        ("GET", _) => agent.get(&url).header("authorization", &auth).call(),
        (_, Some(b)) => agent.post(&url).header("authorization", &auth).send_json(b),
        (_, None) => agent.post(&url).header("authorization", &auth).send_empty(),
    }
    .expect("request");
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

fn a_manager_reviews_a_report_through_the_api_and_the_rep_sees_it_after_sync(w: World) {
    let phone = w.device("ana");
    let shop = account(&w, &phone, "Hotel Avenida");
    let (visit_id, report_id) = submitted_report(&w, &phone, shop, "Met the buyer.");
    let mona = w.device("mona");
    let token = mona.access_token();
    let rid = report_id.to_string();

    // The inbox lists it, with the rep and the visit.
    let (status, inbox) = api(&w, "GET", "/v1/reports?status=submitted", &token, None);
    assert_eq!(status, 200, "{inbox}");
    let item = inbox
        .as_array()
        .and_then(|a| a.iter().find(|i| i["id"] == rid.as_str()))
        .unwrap_or_else(|| panic!("the report is in the inbox: {inbox}"));
    assert_eq!(item["rep_id"], w.person("ana").id.to_string().as_str());
    assert_eq!(item["visit_id"], visit_id.to_string().as_str());
    assert_eq!(item["account_id"], shop.to_string().as_str());

    // The report's page data, as JSON.
    let (status, detail) = api(&w, "GET", &format!("/v1/reports/{rid}"), &token, None);
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["report"]["summary"], "Met the buyer.");
    assert_eq!(detail["visit"]["id"], visit_id.to_string().as_str());
    assert_eq!(detail["account"]["name"], "Hotel Avenida");
    assert_eq!(
        detail["history"].as_array().map(Vec::len),
        Some(2),
        "{detail}"
    );

    // A rep may not review; a request for changes needs a comment.
    let ben = w.device("ben");
    let ben_token = ben.access_token();
    assert_eq!(
        api(&w, "GET", &format!("/v1/reports/{rid}"), &ben_token, None).0,
        403
    );
    let decision = |d: &str, c: Option<&str>| serde_json::json!({ "decision": d, "comment": c });
    let path = format!("/v1/reports/{rid}/decision");
    assert_eq!(
        api(
            &w,
            "POST",
            &path,
            &ben_token,
            Some(decision("approve", None))
        )
        .0,
        403
    );
    let (status, body) = api(
        &w,
        "POST",
        &path,
        &token,
        Some(decision("request_changes", None)),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");

    let (status, body) = api(
        &w,
        "POST",
        &path,
        &token,
        Some(decision("request_changes", Some("Add the shelf count"))),
    );
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("changes_requested")),
        "{body}"
    );

    // The rep's phone shows it after its next sync, and works offline with it.
    phone.sync();
    let back: VisitReport = phone.store().read_stateful(report_id).expect("read");
    assert_eq!(back.status, report::ReportStatus::ChangesRequested);
    assert!(
        back.comments
            .values()
            .any(|c| c.text == "Add the shelf count")
    );
    phone
        .store()
        .update::<VisitReport>(report_id, t(4), |r| {
            r.summary = "Met the buyer; 14 facings.".into()
        })
        .expect("edit");
    phone
        .store()
        .act(report_id, |d| report::submit(d, &phone.actor, t(5)))
        .expect("resubmit");
    let report = phone.sync();
    assert_eq!((report.pushed, report.rejected), (1, 0), "{report:?}");

    // Bulk approval: each report on its own.
    let missing = RecordId::new().to_string();
    let (status, results) = api(
        &w,
        "POST",
        "/v1/reports/decisions",
        &token,
        Some(serde_json::json!({ "ids": [rid, missing], "decision": "approve" })),
    );
    assert_eq!(status, 200, "{results}");
    assert_eq!(results[0]["status"], "approved", "{results}");
    assert_eq!(results[1]["error"]["code"], "not_found", "{results}");
    phone.sync();
    let done: VisitReport = phone.store().read_stateful(report_id).expect("read");
    assert_eq!(done.status, report::ReportStatus::Approved);
    assert_eq!(done.reviewer, Some(w.person("mona").id));
    // Deciding again is a conflict, not a second decision.
    let (status, body) = api(&w, "POST", &path, &token, Some(decision("approve", None)));
    assert_eq!(status, 409, "{body}");
}

/// Repair is no existence oracle: a record of another rep and an id nobody
/// uses get the same answer, and the record's changes are not given away.
fn repair_answers_a_record_out_of_scope_like_one_that_does_not_exist(w: World) {
    use fieldsync_core::sync::Transport as _;
    let ana = w.device("ana");
    let sara = w.device("sara");
    let v = Visit::planned(w.meta("sara"), RecordId::new(), t(0), t(1));
    let hidden = sara
        .store()
        .create_stateful(&v, &sara.actor, t(0))
        .expect("sara's visit");
    sara.sync();
    let empty = {
        let mut doc = automerge::AutoCommit::new();
        let mut state = automerge::sync::State::new();
        use automerge::sync::SyncDoc as _;
        doc.sync()
            .generate_sync_message(&mut state)
            .expect("a first message")
            .encode()
    };
    let ask = |id: RecordId| {
        ana.net().repair(
            &ana.access_token(),
            &protocol::RepairRequest {
                id,
                kind: RecordKind::Visit,
                message: serde_bytes::ByteBuf::from(empty.clone()),
                epoch: 0,
            },
        )
    };
    let out_of_scope = ask(hidden).expect("answered");
    let unknown = ask(RecordId::new()).expect("answered");
    assert_eq!(out_of_scope, unknown, "the same answer, byte for byte");
    if let Some(message) = &out_of_scope.message {
        let decoded = automerge::sync::Message::decode(message).expect("a sync message");
        assert!(
            decoded.heads.is_empty(),
            "nothing of sara's visit: {decoded:?}"
        );
    }
}

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

/// A visit of `dev`'s user at `account`, `days` from today (negative: in the
/// past) from 09:00 to 10:00, checked in and out when `done`.
fn visit_on_day(w: &World, dev: &Device, account: RecordId, days: i64, done: bool) -> RecordId {
    let at = |h: i64| t(days * DAY + h * HOUR);
    let v = Visit::planned(w.meta(dev.person.name()), account, at(9), at(10));
    let id = dev
        .store()
        .create_stateful(&v, &dev.actor, at(8))
        .expect("visit");
    if done {
        dev.store()
            .act(id, |d| visit::check_in(d, &dev.actor, at(9), None, SITE))
            .expect("check in");
        dev.store()
            .act(id, |d| {
                visit::check_out(
                    d,
                    &dev.actor,
                    at(10),
                    None,
                    SITE,
                    fieldsync_core::model::VisitOutcome::NoOrder,
                )
            })
            .expect("check out");
    }
    id
}

/// Ben, about to call on a customer tomorrow, holds what happened there
/// lately although his own scope does not reach it: the last three completed
/// visits (a colleague's, before his window) and the last finished job, all
/// read-only on his device and on the server; the set follows new work and
/// edits; records that leave it leave his device.
fn reps_hold_the_last_visits_and_jobs_at_their_accounts_for_reference(w: World) {
    use fieldsync_core::model::{Assignment, AssignmentStatus, ServiceJob, assignment};
    use fieldsync_core::store::StoreError;
    let mona = w.device("mona");
    let ana = w.device("ana");
    let tomas = w.device("tomas");
    let ben = w.device("ben");
    let shop = account(&w, &mona, "Padaria Central");
    let elsewhere = account(&w, &mona, "Talho Norte");
    // A job at the shop, due twelve days ago, done yesterday by Tomás.
    let then = |h: i64| t(-DAY + h * HOUR);
    let mut job = ServiceJob::new(w.meta("mona"), shop, "repair");
    job.sla_due = Some(t(-12 * DAY + 18 * HOUR));
    let job_id = mona
        .store()
        .create_stateful(&job, &mona.actor, then(8))
        .expect("job");
    let a = Assignment::new(w.meta("tomas"), job_id, then(9), then(12));
    let assignment_id = mona
        .store()
        .create_stateful(&a, &mona.actor, then(8))
        .expect("assignment");
    mona.store()
        .act(assignment_id, |d| {
            assignment::advance(
                d,
                &mona.actor,
                AssignmentStatus::Dispatched,
                then(8),
                None,
                None,
            )
        })
        .expect("dispatch");
    assert_eq!(mona.sync().rejected, 0);
    tomas.sync();
    for (to, h) in [
        (AssignmentStatus::Accepted, 9),
        (AssignmentStatus::OnSite, 10),
        (AssignmentStatus::InProgress, 10),
        (AssignmentStatus::Completed, 11),
    ] {
        tomas
            .store()
            .act(assignment_id, |d| {
                assignment::advance(d, &tomas.actor, to, then(h), None, None)
            })
            .expect("work");
    }
    assert_eq!(tomas.sync().rejected, 0);

    // Ana's visits at the shop: four done, one planned and never started,
    // and one done at another customer.
    let done: Vec<RecordId> = [-20, -15, -10, -5]
        .into_iter()
        .map(|d| visit_on_day(&w, &ana, shop, d, true))
        .collect();
    let not_started = visit_on_day(&w, &ana, shop, -4, false);
    let other_shop = visit_on_day(&w, &ana, elsewhere, -3, true);
    assert_eq!(ana.sync().rejected, 0);

    // Ben plans his call tomorrow; his sync brings the shop's recent work.
    let tomorrow = visit_on_day(&w, &ben, shop, 1, false);
    let r = ben.sync();
    assert_eq!(r.rejected, 0, "{r:?}");
    let mut reference = ben.store().reference_records().expect("reference");
    reference.sort();
    let mut expected = vec![done[1], done[2], done[3], job_id];
    expected.sort();
    assert_eq!(reference, expected, "the last three visits and the job");
    for id in &expected {
        assert!(ben.store().is_reference(*id));
    }
    let latest: Visit = ben
        .store()
        .read_stateful(done[3])
        .expect("Ana's last visit");
    assert_eq!(latest.status, VisitStatus::Completed);
    let fixed: ServiceJob = ben.store().read_stateful(job_id).expect("the job");
    assert_eq!(fixed.status, fieldsync_core::model::JobStatus::Completed);
    for absent in [done[0], not_started, other_shop, assignment_id] {
        assert!(
            ben.store().doc(absent).is_err(),
            "{absent} is not reference: an older visit, one never started, another \
             customer's, an assignment"
        );
    }
    assert!(
        !ben.store().is_reference(tomorrow),
        "his own visit is his own"
    );
    let listed = ben.store().visits_for_account(shop).expect("visits");
    assert_eq!(listed.len(), 4, "his own and three for reference");

    // Read-only on the device...
    let refused = ben
        .store()
        .update::<Visit>(done[3], t(11 * HOUR), |v| v.notes = "mine now".into())
        .expect_err("reference is read-only");
    assert!(
        matches!(refused, StoreError::ReadOnly(id) if id == done[3]),
        "{refused}"
    );
    // ... and on the server, for a client that builds its own change.
    let copy = w.server_doc(done[3]).expect("on the server");
    let outcome = ben.push_forged(copy, |d| {
        d.update::<Visit>(t(11 * HOUR), |v| v.notes = "forged".into())
            .expect("edit");
    });
    assert!(
        matches!(&outcome, protocol::PushOutcome::Rejected(r) if r.code == protocol::RejectCode::Forbidden),
        "a reference record is out of the writer's scope: {outcome:?}"
    );
    let on_server: Visit = w
        .server_doc(done[3])
        .expect("on the server")
        .read_stateful()
        .expect("visit");
    assert_ne!(on_server.notes, "forged");

    // Mona adds a note to Ana's last visit; Ana completes another one two
    // days ago (outside Ben's window): it joins, the oldest of three leaves.
    mona.sync();
    mona.store()
        .update::<Visit>(done[3], t(12 * HOUR), |v| {
            v.notes = "Ask about the new oven".into()
        })
        .expect("a manager's note");
    assert_eq!(mona.sync().rejected, 0);
    let newest = visit_on_day(&w, &ana, shop, -2, true);
    assert_eq!(ana.sync().rejected, 0);
    let r = ben.sync();
    assert_eq!(r.rejected, 0, "{r:?}");
    let noted: Visit = ben.store().read_stateful(done[3]).expect("still held");
    assert_eq!(
        noted.notes, "Ask about the new oven",
        "held records get their new changes"
    );
    let mut reference = ben.store().reference_records().expect("reference");
    reference.sort();
    let mut expected = vec![done[2], done[3], newest, job_id];
    expected.sort();
    assert_eq!(reference, expected);
    assert!(
        ben.store().doc(done[1]).is_err(),
        "the fourth newest left the device"
    );

    // Ben's call moves to another customer: nothing at the shop is reference.
    ben.store()
        .update::<Visit>(tomorrow, t(13 * HOUR), |v| v.account_id = elsewhere)
        .expect("moved");
    let r = ben.sync();
    assert_eq!(r.rejected, 0, "{r:?}");
    assert_eq!(
        ben.store().reference_records().expect("reference"),
        vec![other_shop]
    );
    for id in [done[2], done[3], newest, job_id] {
        assert!(ben.store().doc(id).is_err(), "{id} left with the shop");
    }
    assert!(
        ben.store()
            .update::<Visit>(tomorrow, t(14 * HOUR), |v| v.notes = "ok".into())
            .is_ok()
    );
}

/// A phone's store is restored from an old backup (the OS's copy of the app's
/// data) after the phone had sent more edits of a visit; before its first sync
/// the user edits that visit again. Its Automerge actor has not seen its own
/// later changes, so the edit reuses a change number the server holds with
/// other content, and the server refuses the record. The sync client sees
/// that clash and carries the edit over as a new change within the same
/// sync: the edit lands, the later edits stay, the ledger stays empty, and
/// the change log holds the edit once.
fn a_phone_restored_from_an_old_backup_carries_an_edit_over_by_itself(w: World) {
    let phone = w.device("ana");
    let shop = account(&w, &phone, "Backup outlet");
    let visit = plan_visit(&w, &phone, shop, 1);
    phone.sync();
    let (path, session, actor, person, login) = (
        phone.path.clone(),
        phone.client.session().expect("session"),
        phone.actor.clone(),
        phone.person.clone(),
        phone.login.clone(),
    );
    drop(phone);
    let backup = path.with_extension("backup");
    std::fs::copy(&path, &backup).expect("back up");
    let reopen = || {
        let store = std::sync::Arc::new(
            fieldsync_core::store::DeviceStore::open(&path, Default::default()).expect("store"),
        );
        let net = fieldsync_test_support::Faulty::new(fieldsync_core::sync::HttpTransport::new(
            &w.base,
            std::time::Duration::from_secs(30),
        ));
        let client = fieldsync_core::sync::SyncClient::new(store, net, fast_options());
        client.set_session(session.clone());
        Device {
            client,
            actor: actor.clone(),
            person: person.clone(),
            path: path.clone(),
            login: login.clone(),
        }
    };
    let phone = reopen();
    for i in 0..3 {
        phone
            .store()
            .update::<Visit>(visit, t(10 + i), |v| {
                v.notes = format!("after the backup {i}")
            })
            .expect("edit");
    }
    phone.sync();
    let session = phone.client.session().expect("session");
    drop(phone);

    std::fs::copy(&backup, &path).expect("restore the backup");
    let _ = std::fs::remove_file(path.with_extension("db-wal"));
    let phone = reopen();
    phone.client.set_session(session);
    phone
        .store()
        .update::<Visit>(visit, t(30), |v| {
            v.instructions = Some("typed on the restored phone".into())
        })
        .expect("edit on the restored phone");
    let logged = w.log_len();
    let report = phone.sync();
    assert_eq!(report.rejected, 0, "{report:?}");
    assert_eq!(report.carried_over, 1, "{report:?}");
    assert!(phone.store().rejections().expect("ledger").is_empty());
    assert_eq!(w.log_len(), logged + 1, "the edit is logged once");
    let server = w.server_doc(visit).expect("on the server");
    let v: Visit = server.read_stateful().expect("visit");
    assert_eq!(v.notes, "after the backup 2", "the later edits stay");
    assert_eq!(
        v.instructions.as_deref(),
        Some("typed on the restored phone")
    );
    assert_eq!(heads(&phone, visit), server_heads(&w, visit));
}
