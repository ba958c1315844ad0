//! The sandbox's budget against scripts that fight it: loops that catch their own
//! out-of-memory errors and try again must still end with the run's budget, as a timeout or
//! an out-of-memory error, never run on. Elapsed times are printed, not asserted (these
//! machines are shared); with a 300 ms budget they were 300–400 ms in a release build.

use std::path::Path;
use std::time::{Duration, Instant};

use herald_script::{ErrorKind, Limits, Sandbox};
use serde_json::json;

fn sandbox(ms: u64) -> Sandbox {
    let bot = herald_core::bot::parse_bot(
        "b",
        Path::new("bot.yaml"),
        "states:\n  A:\n    q: a\n    a: x\n",
        &|_| None,
    )
    .expect("bot");
    let mut sb = Sandbox::new(Limits {
        time: Duration::from_millis(ms),
        ..Limits::default()
    })
    .expect("sandbox");
    sb.load_bot(&bot).expect("loads");
    sb
}

#[test]
fn memory_bombs_and_out_of_memory_retry_loops_end_within_the_budget() {
    let mut sb = sandbox(300);
    for src in [
        "var a = []; for (;;) a.push(new Array(100000).fill(1));",
        "var a = []; for (;;) a.push(new Array(100000));",
        "for (;;) { try { var a = []; for (;;) a.push(new Array(100000).fill(1)); } catch (e) {} }",
        "for (;;) { try { var s = 'x'; for (;;) s = s + s; } catch (e) {} }",
        "var keep = []; for (;;) { try { for (;;) keep.push({x: 1}); } catch (e) {} }",
    ] {
        let started = Instant::now();
        let e = sb
            .job_condition("b", src, &json!({}))
            .expect_err("the script cannot finish");
        println!("{src}: {:?} after {:?}", e.kind, started.elapsed());
        assert!(
            matches!(e.kind, ErrorKind::Timeout | ErrorKind::OutOfMemory),
            "{src}: {e:?}"
        );
        // The runtime is usable afterwards.
        assert!(
            sb.job_condition("b", "return params.ok;", &json!({"params": {"ok": true}}))
                .expect("a plain condition runs")
        );
    }
}
