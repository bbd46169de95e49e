//! Simulated save and restore through the engine (64 MiB state, 1 MiB buffers): the harness's
//! data path without a kernel. `cargo bench --bench sim_transfer` (CI: `cargo bench -- --test`).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use vfio_harness::device::{DeviceSpec, OpenOptions};
use vfio_harness::migration::{driver_for, engine};

const STATE: u64 = 64 << 20;

fn open(params: &str) -> Box<dyn vfio_harness::migration::MigrationDriver> {
    let spec: DeviceSpec = format!("sim:{params}").parse().expect("sim spec");
    let dev = vfio_harness::open(&spec, &OpenOptions::default()).expect("open the simulator");
    driver_for(dev).expect("migration driver")
}

fn transfer(c: &mut Criterion) {
    let opts = engine::Options {
        buffer_size: 1 << 20,
        ..Default::default()
    };
    let mut g = c.benchmark_group("sim");
    g.throughput(Throughput::Bytes(STATE));
    let mut src = open(&format!("state={STATE},seed=1"));
    g.bench_function("save 64 MiB", |b| {
        b.iter(|| {
            let (_, r) = engine::save(src.as_mut(), std::io::sink(), "sink", &opts).expect("save");
            black_box(r.bytes)
        })
    });
    let (stream, _) = engine::save(src.as_mut(), Vec::new(), "vec", &opts).expect("save");
    let mut dst = open(&format!("state={STATE},seed=2,verify-seed=1"));
    g.bench_function("restore 64 MiB (verified)", |b| {
        b.iter(|| {
            let r = engine::restore(dst.as_mut(), black_box(&stream[..]), &opts).expect("restore");
            black_box(r.bytes)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(2));
    targets = transfer
}
criterion_main!(benches);
