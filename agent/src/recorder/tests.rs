use super::*;

fn drain(rec: &Recorder, before: u64) -> HashMap<String, Value> {
    let mut out = Vec::new();
    rec.drain(before, &mut out);
    out.into_iter().map(|d| (d.id.keys().second[0].to_string(), d.value)).collect()
}

#[test]
fn kinds_are_separate_series() {
    let rec = Recorder::new();
    rec.counter_at(100, "x", &[], 2.0);
    rec.observe_at(100, "x", &[], 7.0, 1.0);
    rec.with_series(100, "x", &[], Kind::Gauge, |s, sec, _| s.set_gauge(sec, 3.0));
    let got = drain(&rec, 101);
    assert_eq!(got["app.x.count_ps"], Value::Count(2.0));
    assert_eq!(got["app.x"], Value::Gauge(3.0));
    let Value::Histogram(d) = &got["app.x.p50"] else { panic!("{got:?}") };
    let s = d.summary();
    assert!((s.p50 - 7.0).abs() <= 0.07 && s.count == 1.0, "{s:?}");
}

#[test]
fn buckets_follow_seconds_and_gauges_persist() {
    let rec = Recorder::new();
    rec.counter_at(100, "c", &["a:1"], 1.0);
    rec.counter_at(101, "c", &["a:1"], 4.0);
    rec.gauge("g", &[], 5.0);
    let got = drain(&rec, 101);
    assert_eq!(got["app.c{a:1}.count_ps"], Value::Count(1.0));
    assert_eq!(got["app.g"], Value::Gauge(5.0));
    let got = drain(&rec, 102);
    assert_eq!(got["app.c{a:1}.count_ps"], Value::Count(4.0));
    assert_eq!(got["app.g"], Value::Gauge(5.0), "a gauge reports its value every second");
    rec.gauge_add("g", &[], -2.0);
    assert_eq!(drain(&rec, 103)["app.g"], Value::Gauge(3.0));
}

#[test]
fn idle_series_are_evicted() {
    let rec = Recorder::new();
    rec.counter_at(100, "c", &[], 1.0);
    assert_eq!(drain(&rec, 101).len(), 1);
    assert_eq!(rec.series(), 1);
    assert!(drain(&rec, 100 + IDLE_EXPIRE_SECS + 1).is_empty());
    assert!(lock(&rec.inner.shards[shard_of("c")]).by_name.is_empty());
    assert_eq!(rec.series(), 0);
}

#[test]
fn one_cap_for_the_whole_recorder() {
    let rec = Recorder::with_limits(Limits { max_series: 32, ..Limits::default() });
    for i in 0..1000 {
        rec.counter_at(100, &format!("c{i}"), &[], 1.0);
    }
    // Exactly the cap, whatever the shards the names fall in.
    assert_eq!(rec.series(), 32);
    assert_eq!(rec.dropped(), 1000 - 32);
    assert_eq!(drain(&rec, 101).len(), 32);
}

#[test]
fn tag_variants_of_one_name_leave_room_for_others() {
    let rec = Recorder::with_limits(Limits { max_series: 256, max_series_per_name: 16, ..Limits::default() });
    for i in 0..10_000 {
        rec.counter_at(100, "requests", &[&format!("user:{i}")], 1.0);
    }
    assert_eq!(rec.series(), 16);
    assert_eq!(rec.dropped(), 10_000 - 16);
    assert!(!rec.inner.full.load(Ordering::Relaxed), "one full name does not hurry the expiry of the others");
    rec.counter_at(100, "orders", &[], 1.0);
    let got = drain(&rec, 101);
    assert_eq!(got["app.orders.count_ps"], Value::Count(1.0), "a new name still gets in");
}

#[test]
fn after_the_cap_refused_a_series_idle_ones_make_room_soon() {
    let rec = Recorder::with_limits(Limits { max_series: 100, ..Limits::default() });
    for i in 0..100 {
        rec.counter_at(100, &format!("burst{i}"), &[], 1.0);
    }
    rec.counter_at(100, "steady", &[], 1.0);
    assert_eq!(rec.dropped(), 1);
    // Without pressure the burst would be kept for IDLE_EXPIRE_SECS; the refusal shortens it.
    let mut sec = 101;
    while sec <= 100 + PRESSURE_EXPIRE_SECS + 1 {
        drain(&rec, sec);
        sec += 1;
        rec.counter_at(sec - 1, "steady", &[], 1.0);
    }
    assert!(rec.series() <= 1, "{} series held", rec.series());
    rec.counter_at(sec, "steady", &[], 1.0);
    drain(&rec, sec + 1);
    assert_eq!(drain(&rec, sec + 2).len(), 0);
    rec.counter_at(sec + 2, "steady", &[], 2.0);
    assert_eq!(drain(&rec, sec + 3)["app.steady.count_ps"], Value::Count(2.0));
}

#[test]
fn long_names_tags_and_bad_values_are_rejected_and_counted() {
    let rec = Recorder::new();
    rec.counter("x".repeat(65_000).as_str(), &[], 1.0);
    rec.counter("ok", &[&"t".repeat(MAX_TAGS_BYTES + 1)], 1.0);
    rec.histogram("lat", &[], f64::NAN);
    rec.gauge("", &[], 1.0);
    assert_eq!(rec.rejected(), 4);
    assert_eq!(rec.series(), 0);
    rec.counter(&"n".repeat(MAX_NAME_BYTES), &[], 1.0);
    assert_eq!(rec.series(), 1);
}

#[test]
fn sets_count_distinct_members() {
    let rec = Recorder::new();
    for m in ["a", "b", "a", "c"] {
        rec.set_insert("users", &[], m);
    }
    let mut out = Vec::new();
    rec.drain(u64::MAX, &mut out);
    assert_eq!(out[0].value, Value::Unique(3));
}

#[test]
fn many_threads_lose_nothing_while_draining() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 20_000;
    let rec = Recorder::new();
    let mut total = 0.0;
    let mut observed = 0.0;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let rec = rec.clone();
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    let tag = format!("t:{}", i % 4);
                    rec.counter_at(100 + (i / 5000) as u64, "hits", &[&tag], 1.0);
                    rec.observe_at(100, &format!("lat{}", t % 2), &[], i as f64, 1.0);
                }
            });
        }
        // Drain concurrently with the writers: every increment lands in exactly one drain.
        for _ in 0..50 {
            let mut out = Vec::new();
            rec.drain(102, &mut out);
            for d in out {
                match d.value {
                    Value::Count(c) => total += c,
                    Value::Histogram(d) => observed += d.summary().count,
                    _ => {}
                }
            }
            std::thread::yield_now();
        }
    });
    let mut out = Vec::new();
    rec.drain(u64::MAX, &mut out);
    for d in out {
        match d.value {
            Value::Count(c) => total += c,
            Value::Histogram(d) => observed += d.summary().count,
            _ => {}
        }
    }
    assert_eq!(total, (THREADS * PER_THREAD) as f64);
    assert_eq!(observed, (THREADS * PER_THREAD) as f64);
}
