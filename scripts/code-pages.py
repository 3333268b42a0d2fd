#!/usr/bin/env python3
"""How much of a worker binary's code runs from exec to idle, and how much of it the kernel
keeps resident: the figures BENCHMARKS.md ("What changed", "Memory") quotes for idle RSS.

    scripts/code-pages.py target/release/bench-echo
    scripts/code-pages.py target/bench/runpod-sdk-echo/target/release/runpod-sdk-echo

Serves a loopback platform (Python's http.server: two jobs, then job-takes held 1 s and
answered 204), runs the worker under `valgrind --tool=callgrind --dump-instr=yes`, dumps the
profile once the jobs are done and the worker has been idle half a second, then stops it.
Every instruction address that ran is mapped to its 4 KB page of the binary's executable
segment. The kernel maps the 64 KB window around each page fault of a file mapping
(`fault_around_bytes`), and ASLR puts the binary at any 4 KB offset against those windows, so
the resident `.text` is computed for each of the 16 offsets and averaged; `/proc/<pid>/smaps`
of idle runs falls in the printed range. With symbols (a build with
`CARGO_PROFILE_RELEASE_STRIP=false`) it also prints the functions that ran, by size.

Needs valgrind (callgrind_control) and binutils (readelf, nm). Not run by CI.
"""

import bisect
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

JOBS = 2
WINDOW_PAGES = 16  # 64 KB fault-around windows of 4 KB pages


def serve_platform():
    state = {"given": 0, "done": 0}
    lock = threading.Lock()

    class Platform(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, code, body=b""):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if "/job-take" in self.path:
                with lock:
                    job = None
                    if state["given"] < JOBS:
                        state["given"] += 1
                        job = state["given"]
                if job is None:
                    time.sleep(1)
                    return self.answer(204)
                body = {"id": f"job-{job}", "input": {"prompt": "hi", "i": job}}
                batch = "job-take-batch" in self.path
                return self.answer(200, json.dumps([body] if batch else body).encode())
            if "/job-stop" in self.path:
                time.sleep(1)
                return self.answer(204)
            return self.answer(200, b"{}")

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if "/job-done" in self.path:
                with lock:
                    state["done"] += 1
            return self.answer(200, b"{}")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Platform)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state


def profile(binary, out):
    server, state = serve_platform()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    env = {
        "PATH": os.environ["PATH"],
        "RUNPOD_WEBHOOK_GET_JOB": base + "/job-take/$ID?gpu=local",
        "RUNPOD_WEBHOOK_POST_OUTPUT": base + "/job-done/pod/$ID?gpu=local",
        "RUNPOD_WEBHOOK_POST_STREAM": base + "/job-stream/pod/$ID?gpu=local",
        "RUNPOD_WEBHOOK_PING": base + "/ping/pod?gpu=local",
        "RUNPOD_AI_API_KEY": "local",
        "RUNPOD_POD_ID": "pod",
        "RUNPOD_WORKER_CONCURRENCY": "1",
        "BENCH_CONCURRENCY": "1",
    }
    worker = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--dump-instr=yes", f"--callgrind-out-file={out}", binary],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while state["done"] < JOBS:
        if time.monotonic() > deadline or worker.poll() is not None:
            sys.exit(f"{binary} did not finish {JOBS} jobs")
        time.sleep(0.05)
    time.sleep(0.5)
    subprocess.run(["callgrind_control", "-d", str(worker.pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    worker.terminate()
    worker.wait()
    server.shutdown()
    return out + ".1"


def addresses_run(callgrind, binary):
    """Instruction addresses of `binary` that ran, from a --dump-instr=yes profile."""
    name = os.path.basename(binary)
    objects, addrs, addr, inside = {}, set(), 0, False

    def object_name(value):
        m = re.match(r"\((\d+)\)(?: (.*))?", value)
        if not m:
            return value
        if m.group(2):
            objects[m.group(1)] = m.group(2)
        return objects.get(m.group(1), value)

    for line in open(callgrind):
        line = line.rstrip("\n")
        if line.startswith("ob="):
            inside = object_name(line[3:]).endswith("/" + name)
        elif line.startswith("cob="):
            object_name(line[4:])
        elif line and line[0] in "0123456789+-*":
            token = line.split()[0]
            if token.startswith("0x"):
                addr = int(token, 16)
            elif token[0] in "+-":
                step = int(token[1:], 16) if token[1:].startswith("0x") else int(token[1:])
                addr += step if token[0] == "+" else -step
            if inside:
                addrs.add(addr)
    return addrs


def text_segment(binary):
    for line in subprocess.run(["readelf", "-lW", binary], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == "LOAD" and "E" in fields[6:-1]:
            start, size = int(fields[2], 16), int(fields[5], 16)
            return start >> 12, (start + size + 0xFFF) >> 12
    sys.exit("no executable segment")


def resident_kb(pages, first, end):
    """Resident KB of the segment [first, end), and windows touched, for each of the 16 offsets."""
    figures = []
    for offset in range(WINDOW_PAGES):
        windows = {(page + offset) // WINDOW_PAGES for page in pages}
        kept = sum(min(w * WINDOW_PAGES + WINDOW_PAGES - offset, end)
                   - max(w * WINDOW_PAGES - offset, first) for w in windows)
        figures.append((kept * 4, len(windows)))
    return figures


def functions_run(binary, addrs):
    symbols = []
    for line in subprocess.run(["nm", "-n", "-S", "--demangle", binary], capture_output=True,
                               text=True).stdout.splitlines():
        fields = line.split(None, 3)
        if len(fields) == 4 and fields[2] in "tTwW":
            symbols.append((int(fields[0], 16), int(fields[1], 16), fields[3]))
    starts = [s[0] for s in symbols]
    ran = set()
    for a in addrs:
        i = bisect.bisect_right(starts, a) - 1
        if i >= 0 and symbols[i][0] <= a < symbols[i][0] + symbols[i][1]:
            ran.add(i)
    return [symbols[i] for i in ran]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        addrs = addresses_run(profile(binary, os.path.join(tmp, "callgrind.out")), binary)
    first, end = text_segment(binary)
    pages = {a >> 12 for a in addrs if first <= a >> 12 < end}
    figures = resident_kb(pages, first, end)
    kb = [k for k, _ in figures]
    windows = [w for _, w in figures]
    print(f"{binary}: {len(pages)} code pages ran ({len(pages) * 4} KB) of {end - first}")
    print(f"resident .text: {sum(kb) / len(kb) / 1000:.2f} MB on average over the 16 offsets, "
          f"{min(kb) / 1000:.2f}-{max(kb) / 1000:.2f} MB; {min(windows)}-{max(windows)} of "
          f"{-(-(end - first) // WINDOW_PAGES)} 64 KB windows")
    ran = functions_run(binary, addrs)
    if ran:
        print(f"{len(ran)} functions ran, {sum(s[1] for s in ran) / 1000:.0f} KB; the largest:")
        for _, size, name in sorted(ran, key=lambda s: -s[1])[:15]:
            print(f"  {size:7d}  {name[:110]}")


if __name__ == "__main__":
    main()
