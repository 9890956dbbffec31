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
    assert!(matches!(got["app.x.p50"], Value::Histogram(s) if s.p50 == 7.0 && s.count == 1.0));
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
    assert!(drain(&rec, 100 + IDLE_EVICT_SECS + 1).is_empty());
    assert!(lock(&rec.inner.shards[shard_of("c")]).by_name.is_empty());
}

#[test]
fn series_are_bounded() {
    let rec = Recorder::with_limits(Limits { max_series: 32, ..Limits::default() });
    for i in 0..1000 {
        rec.counter_at(100, &format!("c{i}"), &[], 1.0);
    }
    let held: usize = rec.inner.shards.iter().map(|s| lock(s).count).sum();
    assert!(held <= 32, "{held} series held");
    assert_eq!(rec.dropped(), 1000 - held as u64);
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
                    Value::Histogram(s) => observed += s.count,
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
            Value::Histogram(s) => observed += s.count,
            _ => {}
        }
    }
    assert_eq!(total, (THREADS * PER_THREAD) as f64);
    assert_eq!(observed, (THREADS * PER_THREAD) as f64);
}
