/*
Copyright The Vessel Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package bench measures the node agent on real libvirt and QEMU: how long a
// VM takes from create to Running and to its first console output, compared
// with the same guest booted by plain QEMU, and what the agent process costs
// (RSS, CPU time) with 0, 10 and 20 guests running. It prints numbers and
// never fails on a time.
//
//	go test ./node-agent/bench -run '^$' -bench Boot -benchtime 1x -timeout 30m
//
// VESSEL_BENCH_VMS (default 10) guests are timed; VESSEL_BENCH_MAX (default
// 20) guests run at the end. Guests have 96 MiB (about 190 MB of QEMU RSS).
package bench
