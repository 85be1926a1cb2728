// Package faults holds widgetq's fault suite (`make faults`; CI runs it as
// part of `make test`): real worker and enqueue processes, the Kommo
// sandbox over HTTP and a real Redis, broken on purpose — a worker killed
// with SIGKILL, Redis restarted or absent, Kommo answering 503s, resets,
// hangs and 429s, every token expiring at once — and a batch whose every
// output is searched for its secrets. Each case ends by checking every
// task's result and the sandbox's counters.
package faults
