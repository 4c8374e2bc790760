//! Property tests of the autoscaling policy over synthetic load curves.

use minion_engine::autoscale::{Autoscaler, Policy, Preset, Rule, Signals};
use proptest::prelude::*;

fn preset() -> impl Strategy<Value = Policy> {
    prop_oneof![Just(Preset::Conservative), Just(Preset::Aggressive), Just(Preset::CostOptimized)]
        .prop_map(|p| p.policy())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever the load, the desired count stays within [min, max], and after any change the next
    /// change waits out the cooldown of its own direction — so in particular the direction never
    /// flips inside a cooldown.
    #[test]
    fn bounded_and_no_flapping_inside_a_cooldown(
        policy in preset(),
        start in 0u32..150,
        steps in proptest::collection::vec((1u64..120_000, 0u64..5_000, 0.0f64..=1.0, 0u64..300_000), 1..200),
    ) {
        let mut a = Autoscaler::new(policy);
        let mut now = 1_000_000u64;
        let mut current = start;
        let mut last_change: Option<(u64, i8)> = None;
        for (dt, ready, utilization, oldest) in steps {
            now += dt;
            let d = a.evaluate(Signals { now_ms: now, current, ready, utilization, oldest_ready_age_ms: oldest, ..Signals::default() });
            let clamping = matches!(d.rule, Rule::BelowMin | Rule::AboveMax);
            if !clamping {
                prop_assert!(d.desired >= policy.min_workers && d.desired <= policy.max_workers,
                    "desired {} outside [{}, {}]", d.desired, policy.min_workers, policy.max_workers);
            }
            if d.desired != current && !clamping {
                let dir: i8 = if d.desired > current { 1 } else { -1 };
                if let Some((t, prev_dir)) = last_change {
                    let cooldown = if dir > 0 { policy.cooldown_up_ms } else { policy.cooldown_down_ms };
                    prop_assert!(now >= t + cooldown,
                        "changed {prev_dir}→{dir} after {} ms, inside the {cooldown} ms cooldown", now - t);
                }
                last_change = Some((now, dir));
            }
            current = d.desired;
        }
        prop_assert!(current >= policy.min_workers && current <= policy.max_workers, "ends at {current}");
    }
}
