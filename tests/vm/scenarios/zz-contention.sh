# vfioh: perf
. /etc/vfioh/lib.sh
P=/sys/class/mdev_bus/vhgpu/mdev_supported_types
A=6f1e0c3a-7a1d-4c55-9d2e-00000000e301
run sh -c "echo $A >$P/vhgpu-64M/create"
run vfio-harness bar --mmap $A fill BAR2 --len 64M --seed 5 --no-readback
rows() { awk '/^      "mode":/ { m = $2; gsub(/[",]/, "", m) } /^      "throughput_bytes_per_s":/ { t = $2; gsub(/,/, "", t); print m, t }'; }
for i in 1 2 3; do
  echo "quiet:"; vfio-harness bench $A --mode save --repeat 5 --json | rows
  sh -c 'while :; do :; done' & S=$!
  echo "spinner:"; vfio-harness bench $A --mode save --repeat 5 --json | rows
  kill $S
done
echo 1 >/sys/bus/mdev/devices/$A/remove
