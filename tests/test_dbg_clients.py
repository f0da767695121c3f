import os, subprocess, json, time
def test_claude(proxy, fake):
    proxy.admin("PUT", "/config/monitor.log_bodies", json={"value": "true"})
    proxy.admin("PUT", "/config/monitor.max_body_bytes", json={"value": "2000000"})
    env = {**os.environ, "ANTHROPIC_BASE_URL": proxy.base_url, "ANTHROPIC_API_KEY": proxy.api_key, "IS_SANDBOX": "1", "HOME": "/tmp/cchome", "DISABLE_AUTOUPDATER": "1"}
    os.makedirs("/tmp/cchome", exist_ok=True)
    p = subprocess.run(["/tmp/clients/node_modules/.bin/claude", "-p", "Say hello", "--dangerously-skip-permissions"], env=env, capture_output=True, text=True, timeout=120)
    print("RC", p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    time.sleep(0.5)
    rows = proxy.admin("GET", "/logs", params={"n": 20})["rows"]
    for r in rows:
        print(r["route"], r["client_model"], r["status"], r["error"][:300], r["user_agent"])
        full = proxy.admin("GET", f"/logs/{r['request_id']}")["row"]
        with open(f"/tmp/cc_{r['request_id']}.json","w") as f: f.write(full.get("request_body") or "")
