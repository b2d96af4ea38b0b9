#!/usr/bin/env bash
# `make run`: use the broker at MQTT_HOST:MQTT_PORT if one answers, else start a local Mosquitto
# (installed from Debian if missing) with persistence under data/mosquitto.
set -euo pipefail
env_value() { # $1=name $2=default: environment first, then .env, then the default
  local v="${!1:-}"
  if [ -z "$v" ] && [ -f .env ]; then v=$(sed -n "s/^$1=//p" .env | tail -n 1); fi
  echo "${v:-$2}"
}
host=$(env_value MQTT_HOST 127.0.0.1)
port=$(env_value MQTT_PORT 1883)
if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  echo "MQTT broker answers at $host:$port: using it"
  exit 0
fi
if [ "$host" != "127.0.0.1" ] && [ "$host" != "localhost" ]; then
  echo "no MQTT broker answers at $host:$port and it is not local: start it, or unset MQTT_HOST" >&2
  exit 1
fi
"$(dirname "$0")/system-deps.sh"
dir="$(pwd)/data/mosquitto"
mkdir -p "$dir"
cat > "$dir/mosquitto.conf" <<CONF
# written by scripts/ensure-broker.sh for local runs: loopback only, so anonymous access stays on this machine
listener $port 127.0.0.1
allow_anonymous true
persistence true
persistence_location $dir/
autosave_interval 30
log_dest file $dir/mosquitto.log
CONF
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
"$mosquitto_bin" -d -c "$dir/mosquitto.conf"
for _ in $(seq 50); do
  if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then echo "started a local Mosquitto on $host:$port"; exit 0; fi
  sleep 0.1
done
echo "mosquitto did not start; see $dir/mosquitto.log" >&2
exit 1
