#!/usr/bin/env bash
# The lab runs behind the shipped model (as root; about 10 minutes each, three at a time on 2 cores:
# more at once starve them, and a run then warns that its timings are suspect, see lab/run.py).
# Then: .venv/bin/python -m training.train --runs training/data --corpus ../shared/corpus/ndpi-benign
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
run() {  # name plan delay jitter loss mtu rate seed [more lab.run options]
  local extra=()
  [ "$7" != "-" ] && extra+=(--rate "$7")
  $PY -m training.lab.run --plan "$2" --duration 600 --out "training/data/$1" --delay "$3" \
      --jitter "$4" --loss "$5" --mtu "$6" --seed "$8" --net "$8" "${extra[@]}" "${@:9}"
}
run r1  train   5   1   0   1500 -   101 & run r2 train 40 5 0 1500 - 102 & run r3 train 120 15 0.5 1500 - 103 & wait
run r4  train   80  20  1   1500 20  104 & run r5 train 2 0.5 0 1500 100 105 & wait
run r6  train   15  3   0   1500 -   106 & run r7 train 60 10 0.5 1500 - 107 & wait
run r8  breadth 30  5   0   1500 -   108 & run r9 breadth 100 20 1 1400 - 109 & run r10 breadth 8 2 0.2 1280 - 110 & wait
run r11 train   0.5 0.2 0   1500 -   111 & run r12 breadth 20 4 0.3 1500 - 112 & run r13 train 50 10 0.5 1440 - 113 & wait
# r14-r16: certificates also minimal (a short name only) or served as a chain with their own CA
run r14 train   0.2 0.1 0   1500 -   114 & run r15 train 25 5 0.2 1500 - 115 & run r16 breadth 70 10 0.5 1500 - 116 & wait
# r17-r19: a direct link (a kernel bridge, no delay: a LAN or same-datacenter pool) and a 1 ms one;
# the `lan` plan adds faster jobs (every 2 s and up) and more JSON look-alikes
run r17 lan     0   0   0   1500 -   117 & run r18 train 0 0 0 1500 - 118 & run r19 lan 1 0.2 0 1500 - 119 & wait
# r20-r22: the `shells` plan (reverse shells over plain TCP too; direct, 30 ms, 90 ms). First kept
# aside: a model trained with them (one booster, one fold split) scored a zero-delay TLS miner's
# first window 0.70-0.80 against an opening threshold of 0.79. In the model since 2026.11.23.13
# (boosters and out-of-fold scores averaged over three seeds, train.MEMBERS): 0.85-1.0 against 0.64.
run r20 shells 0 0 0 1500 - 120 & run r21 shells 30 5 0 1500 - 121 & run r22 shells 90 15 0 1500 - 122 & wait
# Not behind the shipped model: r23 (lan, direct) and r24 (lan, 2 ms). With r1-r22, one booster and
# one split, the mining opening threshold rose to 0.93 and mining flagged within 5 s out-of-fold fell
# to 0.92; averaged over three seeds (with r25-r27 too) they lowered the left-out recall of Bitcoin
# stratum (0.84 to 0.67) and of the TLS reverse shell (0.83 to 0.73). Kept in training/data/held/,
# outside what training reads; move them up to use them.
# run r23 lan 0 0 0 1500 - 123 & run r24 lan 2 0.5 0 1500 - 124 & wait
# r25-r27: the `push` plan (push-notification channels beside mining; 30 ms, direct, 80 ms). The
# model of r1-r19 flagged 22 of their 72 push channels offline, mostly as tunnels. First kept aside
# (with one booster and one fold split, they raised the offline mining threshold to 0.98); in the
# model since 2026.11.23.13, whose boosters and out-of-fold scores average three seeds (train.MEMBERS).
run r25 push 30 5 0 1500 - 125 & run r26 push 0 0 0 1500 - 126 & run r27 push 80 10 0 1500 - 127 & wait
# r28-r32: half of the TLS sessions of every label (miners, tunnels, benign apps, nginx) served as
# TLS 1.2 (`--tls12-share 0.5`); r1-r27 speak TLS 1.3 only. Not behind the shipped model: kept in
# training/data/held/. Model 2026.11.23.14, which never saw TLS 1.2, flagged all 23 of their TLS 1.2
# miners (offline and live) but only 13 within the first 20 packets (16 of 16 over TLS 1.3), 5 of 9
# TLS 1.2 reverse shells, and 1 of 50 benign TLS 1.2 sessions offline (0 live). Trained with all
# five, the offline mining threshold rose from 0.91 to 0.95-0.96 (fold splits seeded 7, 8, 9: the
# corpus's mssql_tds, KakaoTalk and jabber flows scored higher) and mining decided within 20
# packets fell from 0.960 to 0.905 on the same r1-r27 sessions. With r30 and r32 only: thresholds
# 0.92 / 0.92, within 20 packets 0.958, and on r28, r29 and r31 left out 11 of 17 TLS 1.2 miners
# within 20 packets (the shipped model 9 of 17), 2 of 33 benign TLS 1.2 sessions flagged (1 of 33).
# Five at a time: about 20 minutes.
# run r28 train 20 4 0 1500 - 128 --tls12-share 0.5 & run r29 train 60 10 0.3 1500 - 129 --tls12-share 0.5 &
# run r30 breadth 10 2 0 1500 - 130 --tls12-share 0.5 & run r31 push 40 5 0 1500 - 131 --tls12-share 0.5 &
# run r32 shells 15 3 0 1500 - 132 --tls12-share 0.5 & wait
# r33-r36: every stunnel-relayed session (miners, `ssh -R` in TLS, benign apps) relayed by Go's
# crypto/tls instead (training/lab/gotls, `--go-tls-share 1`): another TLS stack, with a 239-byte
# ClientHello against OpenSSL's 517. Not behind the shipped model: kept in training/data/held/.
# Model 2026.11.23.14, which never saw it, flagged 11 of 16 Go TLS miners offline (20 of 20 over
# OpenSSL in the same runs), 15 of 16 live and 4 of 16 within their first 20 packets; none of 27
# benign Go TLS sessions; 5 of 5 `ssh -R` in Go TLS. Trained with r33 and r34 and tested on r35 and
# r36 (one booster set, fold split 7): Go miners 5 of 8 offline (the shipped model 4), 8 of 8 live
# (7), 4 of 8 within 20 packets (1), thresholds as before. Trained with all four (as a model
# 2026.11.23.15, not shipped): Go miners out-of-fold 13 of 16 offline, 10 of 16 within 20 packets,
# 16 of 16 live, but the live opening threshold for mining rose from 0.82 to 0.89 and the lab's
# r1-r27 mining sessions flagged live within 5 s fell from 0.978 to 0.955 (same sessions, same
# measure); leave-one-scenario-out TLS mining 0.77 to 0.73, Ethereum 0.94 to 0.81, TLS reverse
# shell 0.53 to 0.69. Four at a time: about 15 minutes.
# run r33 train 20 4 0 1500 - 133 --go-tls-share 1 & run r34 breadth 40 5 0 1500 - 134 --go-tls-share 1 &
# run r35 push 10 2 0 1500 - 135 --go-tls-share 1 & run r36 train 5 1 0 1500 - 136 --go-tls-share 1 & wait
# x1-x6: XMRig 6.16.0, a real miner, in every Monero-style session (`--xmrig-share 1`, training/lab/
# xmrig.py; 42 sessions, a run's miners sharing a tenth of a CPU, the pool's difficulty fixed at
# 5-160 hashes a share). Behind the shipped model since 2026.11.24.2 (below). Model
# 2026.11.23.14, which learned mining from our emulator only, flagged 26 of the 42 offline, 10
# within their first 20 packets and 17 live (our emulator's miners in the same runs: 92 of 92 in
# each), and 2 of 314 benign sessions offline. Found by their share rate: 13 of 13 sessions with 8
# shares or more, 7 of 12 with 3-7, 6 of 17 with 0-2; by transport: 19 of 22 in the clear, 7 of 14
# over XMRig's own TLS, 0 of 6 in stunnel. Our emulators' shares come every 2-40 s. A small model
# of x1-x3 and the corpus (one booster set, fold split 7), tested on x4-x6: without x1-x3's XMRig
# sessions it flagged 4 of 21 XMRig sessions offline, 0 within 20 packets, 7 live; with them 18, 17
# and 20 of 21, benign sessions flagged live 11 -> 3 of 163, but its thresholds rose (offline mining
# 0.92 -> 0.96, live opening 0.66 -> 0.96) and the corpus flows flagged out-of-fold 1 -> 2. Three at
# a time: about 22 minutes.
run x1 train 20 4 0 1500 - 141 --xmrig-share 1 & run x2 push 40 5 0 1500 - 142 --xmrig-share 1 &
run x3 lan 0 0 0 1500 - 143 --xmrig-share 1 & wait
run x4 breadth 80 10 0.3 1500 - 144 --xmrig-share 1 & run x5 train 5 1 0 1500 - 145 --xmrig-share 1 &
run x6 train 60 10 0.5 1500 - 146 --xmrig-share 1 & wait
# v1-v3: the same, against pools that retarget the difficulty to a share every 10-60 s
# (`--vardiff-share 1`, every mining session), as real pools do: model 2026.11.23.14 flagged 20 of
# 21 XMRig sessions offline and live (9-55 shares each), 10 within their first 20 packets (9 of 13
# in the clear, 1 of 8 over TLS); our emulator's miners 45 of 45 in each; benign 0 of 151 offline,
# 1 live. Three at a time: about 11 minutes.
run v1 train 20 4 0 1500 - 151 --xmrig-share 1 --vardiff-share 1 &
run v2 lan 0 0 0 1500 - 152 --xmrig-share 1 --vardiff-share 1 &
run v3 push 40 5 0 1500 - 153 --xmrig-share 1 --vardiff-share 1 & wait
# e1-e3 and f1-f3: x1-x3's plans and seeds with our emulator's miners instead of XMRig (e), and
# with pools that retarget to a share every 10-60 s (f, `--vardiff-share 1`): only the miner or the
# pool differs. Small models (three runs and the corpus, one booster set, fold split 7) scored on
# XMRig in x4-x6 (fixed difficulty) and v1-v3 (vardiff pools), whole / first 20 packets / live:
#   trained on e1-e3: x4-x6 3 / 0 / 12 of 21, v1-v3 3 / 2 / 21 of 21; mining thresholds 0.98 offline,
#     0.92 live opening; corpus flows flagged out-of-fold 1
#   trained on f1-f3: x4-x6 9 / 1 / 11, v1-v3 21 / 14 / 21; thresholds 0.90, 0.80; corpus 2
#   trained on x1-x3: x4-x6 18 / 17 / 20, v1-v3 21 / 19 / 21; thresholds 0.96, 0.96; corpus 2
#   trained on s1-s3 (half the emulator's miners 10-300 times slower, `--slow-miner-share 0.5`):
#     x4-x6 15 / 5 / 18, v1-v3 18 / 14 / 21; thresholds 0.98, 0.91; corpus 3, and our emulator's
#     ordinary miners in x4-x6 decided within 20 packets fell from 34 (e1-e3) to 13 of 47
# Pools that retarget, as real ones do, taught the emulator's miners what finds the real one at
# such pools; slow miners found the throttled one too, at a cost. Three at a time: about 11 minutes
# a batch (kept in training/data/xmrig/).
# run xmrig/e1 train 20 4 0 1500 - 141 & run xmrig/e2 push 40 5 0 1500 - 142 &
# run xmrig/e3 lan 0 0 0 1500 - 143 & wait
# run xmrig/f1 train 20 4 0 1500 - 141 --vardiff-share 1 --net 161 &
# run xmrig/f2 push 40 5 0 1500 - 142 --vardiff-share 1 --net 162 &
# run xmrig/f3 lan 0 0 0 1500 - 143 --vardiff-share 1 --net 163 & wait
# run xmrig/s1 train 20 4 0 1500 - 141 --slow-miner-share 0.5 --net 171 &
# run xmrig/s2 push 40 5 0 1500 - 142 --slow-miner-share 0.5 --net 172 &
# run xmrig/s3 lan 0 0 0 1500 - 143 --slow-miner-share 0.5 --net 173 & wait
# Training with XMRig (r1-r27 made again on one machine: r7-r27 three at a time, r1-r6 six at a
# time, their SSH key exchanges up to 5 s; x1-x6 and v1-v3 moved up beside them; the corpus;
# out-of-fold, three fold splits seeded 7; not shipped):
#                                 offline mining   live opening   mining within     XMRig whole /
#                                 threshold        threshold      20 packets        20 pkts / live
#   r1-r27 alone                  0.95             0.81           465 of 505        -
#   r1-r27 and v1-v3              0.94             0.93           531 of 571        21 / 16 / 21 of 21
#   r1-r27, x1-x6 and v1-v3       0.98             0.91           605 of 705        62 / 57 / 63 of 63
# x1-x6's throttled XMRig (shares minutes apart, like a chat or push channel) lifts the corpus's
# XMPP (jabber) and mssql_tds flows to 0.98 for mining, and the threshold follows them. A full
# model of all 34 runs (2026.11.23.15, with the size classes below) had an offline threshold of
# 0.99 and left out of training found Bitcoin stratum in 0.01 of its sessions, TLS mining in 0.52,
# XMRig in 0.41 (0.19 within 20 packets, 0.70 live). The same recipe on data made again also
# moves thresholds: 2026.11.23.14's r1-r27 gave 0.91 offline and 0.960 within 20 packets.
# Size classes (git branch size-classes: how many of each direction's first payloads fall in each
# of six size classes, for the offline booster): trained on r1-r6 and tested on XMRig's 63
# sessions they found 33-40 instead of 28-33 whole and 15-21 instead of 9-12 within 20 packets
# (seeds 7 and 11); on all 34 runs they cost 605 -> 568 within 20 packets (threshold 0.98 ->
# 0.99), on r1-r27 alone they gave 465 -> 474 (0.95 -> 0.96). Not adopted.
# x1-x6 and v1-v3 made again (2026-11-24, three at a time; with the pool's share counts in
# labels.json, which x1-x6 and v1-v3 of before lacked) and moved up beside r1-r27: 2026.11.24.1
# (not shipped), trained on them as before, had an offline mining threshold of 0.97 (the corpus's
# XMPP, speed-test and MSSQL flows at 0.967-0.969), mining within 20 packets 0.902 and
# leave-one-scenario-out Bitcoin 0.42, Monero 0.65, Ethereum 0.65, TLS mining 0.63. With the
# corpus weighing half of the benign class (train.CORPUS_SHARE), 2026.11.24.2, shipped: 0.91,
# 0.970, and 0.82, 0.80, 0.91, 0.75 (XMRig 0.73); 5 of XMRig's 63 sessions had no share accepted
# and were left out of training (dataset.MIN_MINED_SHARES).
# h1-h3 (kept in training/data/held/; new seeds): XMRig at a retargeting pool, XMRig at a fixed
# difficulty, the push plan with half the pools retargeting. Model 2026.11.23.14 flagged XMRig in
# 11 / 6 / 12 of 13 sessions (whole / 20 packets / live), our emulator's miners 46 / 45 / 46 of
# 46, reverse tunnels 59 of 59 whole and live, benign sessions 1 of 158 whole and 2 live.
# Model 2026.11.24.2 (`python -m training.heldout`): XMRig 13 / 13 / 13 of 13, and 12 flagged live
# within 5 s of its first packet (2026.11.23.14: none); our emulator's miners 46 of 46 in each;
# tunnels 59 of 59; benign 1 of 158 whole and 1 live. Model 2026.11.24.5 (the same data, trained
# with message-size augmentation, training/augment.py): XMRig 13 / 9 / 13 of 13 and 13 within 5 s;
# emulator miners 46 / 46 / 46 and 45 within 5 s; tunnels 59 of 59; benign 1 whole, none live.
# Leave-one-scenario-out, whole / live: Bitcoin 0.95 / 0.98, Monero 0.93 / 0.87, Ethereum 0.97 /
# 0.93, TLS mining 0.79 / 0.96, XMRig 0.70 / 0.81. Model 2026.11.24.6 (the same data, the offline
# booster also learning from copies carried in TLS, augment.wrapped): XMRig 13 / 12 / 13 of 13, the
# rest as 2026.11.24.5; left out, whole: Bitcoin 0.97, TLS mining 0.89, XMRig 0.79.
# run held/h1 train 30 5 0 1500 - 181 --xmrig-share 1 --vardiff-share 1 &
# run held/h2 breadth 10 2 0 1500 - 182 --xmrig-share 1 &
# run held/h3 push 60 10 0.3 1500 - 183 --vardiff-share 0.5 & wait
# g1-g2 (training/data/held/, new seeds, never in training): the stunnel-relayed sessions over Go's
# TLS (g1), half the TLS sessions as TLS 1.2 and half the Monero-style sessions XMRig's (g2).
# Model 2026.11.24.6 (2026.11.24.5), `python -m training.heldout`: TLS 1.2 miners 5 of 5 whole and
# live, 3 (1) within 20 packets, 1 flagged live within 5 s (their first windows scored 0.16-0.65
# against the opening threshold 0.80); XMRig over TLS 1.2 3 of 3 whole and within 20 packets, 1 of
# 3 live (later windows 0.99 against 0.995); Go TLS miners 3 of 3 whole and live, 1 (0) within 20
# packets; benign: none of 108 flagged whole or live, 1 of 6 Go TLS sessions within 20 packets
# (none); our usual programs: miners 33 of 33 whole and live (32 (30) within 20 packets), tunnels
# 44 of 44. Two at a time: about 12 minutes.
# run held/g1 train 20 4 0 1500 - 191 --go-tls-share 1 &
# run held/g2 train 40 5 0.2 1500 - 192 --tls12-share 0.5 --xmrig-share 0.5 & wait
# t1-t4 (training/data/held/, new seeds): half the TLS sessions as TLS 1.2 again, every plan.
# Model 2026.11.24.6 (2026.11.24.5): TLS 1.2 miners 11 of 11 whole and live, 9 (8) within 20
# packets, but only 1 flagged live within 5 s of its first packet (the usual TLS 1.3 ones: 51 of
# 53); TLS 1.2 tunnels 11 of 11; benign sessions flagged whole 2 (1) of 201, none live. Trained
# with them too (three-seed out-of-fold, as in train.AUGMENTED_VIEWS): offline thresholds 0.92 /
# 0.84, within 20 packets 0.952, left-out TLS mining 0.88: no worse offline (with the TLS copies;
# 0.95-0.96 thresholds without them, r28-r32 above), but live the mining opening threshold rose
# from 0.80 to 0.88, mining flagged within 5 s fell from 0.952 to 0.896 and left-out XMRig's live
# windows from 0.81 to 0.73: kept out. The opening threshold was the corpus's TLS ECH capture's
# score (a handshake and a close): with p1-p3 (below) in training too, 2026.11.24.8 (not shipped)
# had mining flagged within 5 s out-of-fold 0.983 (2026.11.24.7: 0.972) and an opening threshold
# of 0.61 (0.70), but an offline mining threshold of 0.94 (0.89), mining within 20 packets 0.932
# (0.968) and within 10 packets 0.68 (0.77): kept out still. 2026.11.24.7 on t1-t4: TLS 1.2 miners
# 11 of 11 whole and live, 8 within 20 packets, 4 flagged live within 5 s (2026.11.24.6: 1).
# run held/t1 train 20 4 0 1500 - 201 --tls12-share 0.5 & run held/t2 breadth 60 10 0.3 1500 - 202 --tls12-share 0.5 &
# run held/t3 push 10 2 0 1500 - 203 --tls12-share 0.5 &
# run held/t4 shells 30 5 0 1500 - 204 --tls12-share 0.5 --xmrig-share 0.5 & wait
# p1-p3 (behind the shipped model since 2026.11.24.7): the `handshakes` plan, TLS connections that
# are little more than a handshake (browsers' pre-connections, health checks, scanners:
# `tls-preconnect`, OpenSSL's s_client against nginx) beside mining, tunnels and look-alikes over
# TLS; half the TLS sessions of every label served as TLS 1.2. Made once nginx offered TLS 1.3
# (nginx 1.22 agrees to TLS 1.2 at most unless told: every nginx session of the runs above,
# `https-curl` and `https-long-download`, speaks TLS 1.2; made again now, they would speak TLS 1.3,
# lab/run.py nginx_conf). On 2026.11.24.6's table plus p1-p3 (three-seed out-of-fold, one booster
# set per fold): offline thresholds 0.91/0.90 -> 0.89/0.86 (the corpus's TLS ECH capture, a
# handshake and a close, scored 0.91 -> 0.69 for mining), mining within 20 packets on r1-r27's,
# x1-x6's and v1-v3's sessions 0.956 -> 0.973, left out of training TLS mining 0.89 -> 0.91 and
# XMRig 0.79 -> 0.81 whole; live opening threshold 0.80 -> 0.78 (TLS ECH 0.80 -> 0.67), mining
# flagged within 5 s on the same sessions 0.952 -> 0.956. Three at a time: about 10 minutes.
run p1 handshakes 20 4 0 1500 - 211 --tls12-share 0.5 & run p2 handshakes 60 10 0.3 1500 - 212 --tls12-share 0.5 &
run p3 handshakes 5 1 0 1500 - 213 --tls12-share 0.5 & wait
# m1-m3 (behind the shipped model since 2026.11.24.9): the `messaging` plan, XMPP chat (prosody and
# slixmpp clients, training/lab/chat.py; STARTTLS or clear, messages 8-180 s apart on average,
# keepalive pings every 30-300 s) beside mining and push channels. Held out, 2026.11.24.7 flagged 6
# of their 41 STARTTLS chats whole, all as reverse tunnels (up to 0.97; mining at most 0.30), and
# 6 of their 132 benign sessions in all. On 2026.11.24.7's table plus m1-m3 (three-seed
# out-of-fold, one booster set per fold): the offline tunnel threshold fell 0.86 -> 0.80, the
# mining one rose 0.89 -> 0.92 (the corpus's XMPP flows scored 0.92 and 0.91 for mining, 0.95 and
# 0.89 without m1-m3: the lab's chats do not look like them), mining within 20 packets 0.973 ->
# 0.955 on r1-r27's, x1-x6's and v1-v3's sessions. The model trained on all 40 runs
# (2026.11.24.9) had thresholds of 0.90 and 0.74 and 0.964 within 20 packets: see its model card.
# Three at a time: about 11 minutes.
run m1 messaging 30 5 0 1500 - 221 & run m2 messaging 80 10 0.3 1500 - 222 &
run m3 messaging 5 1 0 1500 - 223 & wait
# w1-w6 (behind the shipped model since 2026.11.24.12; new seeds): half of our emulator's mining
# sessions 10 to 300 times slower (`--slow-miner-share 0.5`): a throttled or small miner at a pool
# whose difficulty stays high, shares minutes apart, as XMRig held to a tenth of a CPU in x1-x6.
# The XMRig sessions that 2026.11.24.11's method missed when XMRig was left out of training were
# all x1-x6's (v1-v3's were found): 7-50 packets in up to 5 minutes, some carrying only the pool's
# jobs; our emulator had sent a share every 2-60 s. 63 slowed sessions, 15 with no share
# accepted (left out of training, dataset.MIN_MINED_SHARES). Three-seed out-of-fold, one booster
# set per fold, on 2026.11.24.11's table plus w1-w6, four booster seeds (7, 107, 207, 307) against
# the same without w1-w6: XMRig left out of training found whole in 0.95 (0.92-0.97) of its 63
# sessions against 0.75 (0.70-0.78): by run, seed 7, x1-x3 17 (12) of 21, x4-x6 21 (14) of 21,
# v1-v3 21 (21) of 21; TLS mining left out, on the sessions of r1-r27, x1-x6 and v1-v3, 296 (284)
# of 324 (w1-w6's own TLS miners, 33 of 65 slowed: 39 of 65); offline mining threshold 0.92
# (0.905), mining within 20 packets on the same sessions as before 0.952 (0.958), within 10
# packets 0.70 (0.74); lab benign sessions flagged whole 6.25 (7) on the mean. Live booster (three
# booster seeds, 7, 107 and 207, one booster per fold): XMRig left out 0.85 (0.81) of its sessions,
# mining flagged within 5 s on the same sessions as before 0.947 (0.965; 0.914-0.977 against
# 0.949-0.979), tunnels within 5 s 0.895 (0.898), mining opening threshold 0.75-0.86 (0.68-0.80);
# with w1-w6 but without their slowed miners (the same three seeds): mining within 5 s 0.965
# (0.963, 0.960, 0.972), tunnels within 5 s 0.900, but XMRig left out live 0.79 (0.85 with them,
# 0.81 without w1-w6): the real miner's live recall would pay for our emulator's early verdicts,
# so the live booster keeps them. The shipped model (three boosters per fold) came out at 0.980
# (2026.11.24.11: 0.967) and 0.70 (0.76). An earlier try with x1-x3's plans and seeds
# (training/data/xmrig/s1-s3, slowed sessions only): XMRig left out 0.945, x4-x6 21 of 21. Three
# at a time: about 12 minutes.
run w1 train 30 5 0 1500 - 231 --slow-miner-share 0.5 & run w2 push 10 2 0 1500 - 232 --slow-miner-share 0.5 &
run w3 lan 0 0 0 1500 - 233 --slow-miner-share 0.5 & wait
run w4 breadth 60 10 0.3 1500 - 234 --slow-miner-share 0.5 & run w5 train 5 1 0 1500 - 235 --slow-miner-share 0.5 &
run w6 push 40 5 0 1500 - 236 --slow-miner-share 0.5 & wait
# q1-q3 (behind the shipped model since 2026.11.25.4; new seeds): the `messaging` plan with most
# chat clients querying the server every 20-150 s (`--chat-query-share 0.8`: pings to the server
# and to their own connection, the server's features, version and time, the peer's vCard, nickname
# and last activity, roster and bookmarks) and joining a group chat room first and now and then
# again (prosody's MUC component), as Pidgin does in the corpus's jabber.pcap, whose flows set the
# offline mining threshold (a request answered at once by a larger answer, the client first).
# Offline booster out-of-fold (seeds 7, 107, 207, 307) on 2026.11.25.3's table plus q1-q3, mining
# within 20 packets on the 46 runs' sessions 0.940, 0.902, 0.877, 0.959 (without: 0.899, 0.942,
# 0.868, 0.918; mean 0.920 against 0.907), mining threshold 0.93, 0.95, 0.96, 0.91 (0.95, 0.92,
# 0.96, 0.94); the corpus's chat flows' mean mining scores barely moved (Pidgin's pings 0.926 ->
# 0.899, its group chat join 0.941 -> 0.958, KakaoTalk 0.931 -> 0.928). A first version without
# the room (c0869d0, runs made then and not kept): 0.952, 0.905, 0.942, 0.937 (mean 0.934).
# Within a seed's spread. Three at a time: about 10 minutes.
run q1 messaging 20 4 0 1500 - 253 --chat-query-share 0.8 & run q2 messaging 60 10 0.3 1500 - 254 --chat-query-share 0.8 &
run q3 messaging 2 0.5 0 1500 - 255 --chat-query-share 0.8 & wait
# held/a1-a6 and held/b1-b4 (not behind the shipped model; new seeds): the `automation` plan,
# commands run over SSH without a terminal (configuration management, monitoring) beside reverse
# tunnels, half of them opened by AsyncSSH (training/lab/pyssh.py, `--asyncssh-share 0.5`), a
# pure-Python SSH client the model never saw; b1-b4 also run half of OpenSSH's automation on a
# master connection that persists 30-300 s (`--ssh-mux-share 0.5`, as Ansible runs OpenSSH).
# Model 2026.11.24.12 on all ten: AsyncSSH tunnels flagged 82 of 82 whole and live; automation
# with several commands on one connection flagged as a reverse tunnel in 61 of 77 sessions (whole
# 46, live 73; AsyncSSH 3 a connection 23 of 23, 8 a connection 16 of 16, all on one 22 of 23,
# OpenSSH multiplexed 15 of 15), one command a connection in 4 of 83 (none whole or live).
# Trained also on a1-a3 and b1-b3 (a model 2026.11.24.13, not shipped; 52 runs), on a4-a6 and
# b4: multi-command automation flagged whole in 1 of 28 sessions (2026.11.24.12: 13), live in 0
# (27), AsyncSSH tunnels 31 of 32 whole (32), 32 live (32); but its live tunnel threshold rose
# from 0.92 to 0.999 out-of-fold (offline 0.83 -> 0.90), and left out of training the TLS
# reverse shell's live windows were found in 0.0 of its sessions (0.93), SSH in TLS 0.0 (1.0),
# Dropbear 0.49 (0.85), the WebSocket tunnel 0.24 (0.49); AsyncSSH tunnels left out 0.64 whole,
# 0.0 live; tunnels flagged live out-of-fold 0.967 of sessions (1.0). Kept out. A whole flow's
# features do not say who begins each exchange of a long connection (the client, in automation;
# the outside server, in a reverse tunnel in use), and a live window's say only who begins the
# window. Light on CPU: four at a time, about 11 minutes.
# run held/a1 automation 30 5 0 1500 - 241 --asyncssh-share 0.5 &
# run held/a2 automation 80 10 0.3 1500 - 242 --asyncssh-share 0.5 &
# run held/a3 automation 5 1 0 1500 - 243 --asyncssh-share 0.5 & wait
# run held/a4 automation 20 4 0 1500 - 244 --asyncssh-share 0.5 &
# run held/a5 automation 60 10 0.3 1500 - 245 --asyncssh-share 0.5 &
# run held/a6 automation 0 0 0 1500 - 246 --asyncssh-share 0.5 & wait
# run held/b1 automation 40 5 0 1500 - 247 --asyncssh-share 0.5 --ssh-mux-share 0.5 &
# run held/b2 automation 10 2 0.2 1500 - 248 --asyncssh-share 0.5 --ssh-mux-share 0.5 &
# run held/b3 automation 100 15 0.5 1500 - 239 --asyncssh-share 0.5 --ssh-mux-share 0.5 &
# run held/b4 automation 25 4 0 1500 - 238 --asyncssh-share 0.5 --ssh-mux-share 0.5 & wait
# held/c1-c2: the automation plan again, every automation session's tasks slow (they work 2-24 s
# before they answer; AsyncSSH sends each a 10-60 kB module first, `--slow-task-share 1`).
# Scored with `python -m training.pipeline` (offline and live, tunnel verdicts held and eager)
# together with a1-a6, b1-b4 and r1, r2, r8, r9, r10, r20, r21, r22, r25 made again, 2026.11.24.12:
# - multi-command automation (a/b runs) flagged live in 0 of 77 sessions held (73 eager),
#   offline 0 (49);
# - slow tasks 31 of 32 held and eager: the server speaks first after a silence, as a tunnel's
#   outside end does. Since an exchange that closes its connection no longer counts (2026-11-25),
#   those with a task a connection are cleared (8 of 8; the answer closes it), several tasks on
#   one connection still flagged (23 of 24), tunnels as before;
# - tunnels 400 of 413 live held (413 eager), used ones within 30 s of first use 361 of 372
#   (371); the 13 lost: 11 never used without keepalives, 2 whose only use began within 2 s of a
#   keepalive;
# - benign otherwise 0 of 715 live held (2 eager); mining unchanged.
# run held/c1 automation 30 5 0 1500 - 250 --asyncssh-share 0.5 --ssh-mux-share 0.5 --slow-task-share 1 &
# run held/c2 automation 80 10 0.3 1500 - 237 --asyncssh-share 0.5 --ssh-mux-share 0.5 --slow-task-share 1 & wait
# held/c3-c4 (new seeds): the automation plan with half the automation sessions' tasks slow
# (`--slow-task-share 0.5`). 2026.11.24.12 (training.pipeline, tunnel verdicts held; eager in
# brackets): slow tasks a connection flagged in 0 of 9 sessions (8-9), several slow tasks on one
# connection 9 of 9 (9); quick automation 0 of 14 (8 live); tunnels 26 of 28 offline, 27 live (28),
# the 24 used ones all within 30 s of first use; mining 12 of 12; other benign 0 of 44 (0).
# Small models (2026-11-25: r1-r5, r8-r10, r20-r22 and r25 with the corpus; `--no-evaluate`),
# scored on held/a4-a6, b3-b4 and c2 with training.pipeline (tunnel verdicts held) and, for the
# tunnel families, leave-one-scenario-out of the live booster's windows (model-level, not held):
#   base: those runs; auto: also held/a1-a3, b1-b2 and c1 (automation, some slow, as benign);
#   -x: the connection's exchange counts (by who began them, keepalives) as live features;
#   -h: a benign row's tunnel score counted against the thresholds' budgets only where the verdict
#       would be given (dataset.TunnelEvidence; the training default since 2026-11-25).
#                tunnel thresholds     slow tasks   tunnels    left out, live: OpenSSH, Dropbear,
#                offline/live/opening  live (16)    live (84)  SSH in TLS, TLS shell, shell, WebSocket
#   base         0.89 / 0.98 / 0.72    15           77         0.99 0.67 0.81 0.77 0.00 0.43
#   base-h       0.81 / 0.83 / 0.50    15           77         1.00 0.79 1.00 1.00 0.67 0.53
#   auto         0.93 / 0.995 / 0.83    4           76         0.96 0.63 0.59 0.33 0.00 0.37
#   auto-x       0.93 / 0.995 / 0.86    2           76         0.92 0.64 0.63 0.23 0.00 0.37
#   auto-h       0.88 / 0.995 / 0.64    4           75         0.98 0.63 0.59 0.33 0.00 0.37
# No other benign session of the six runs was flagged held by any of them (base-h eager: 4 of 132
# live, base 2). Automation as benign training data clears slow tasks but teaches "SSH-like is
# benign": left out, AsyncSSH tunnels were found in 0.21 of their sessions whole (auto), and
# every unseen family lost live; exchange counts did not help. Counting only the tunnel verdicts
# that would be given lowered the thresholds and found every unseen family more often, with no
# held false alarm more on the six runs. On eight more held runs (a1-a3, b1-b2, c1, c3, c4, none
# in these models' training) base -> base-h: benign sessions flagged held 18 -> 19 of 304 (the new
# one a cleartext WebSocket channel, live; the 18 are slow tasks), tunnels 107 -> 108 of 112
# offline, 109 live and 96 of 96 used ones in time in both. On the 46 runs (made again
# 2026-11-25; a model 2026.11.25.1, `--no-evaluate`, not shipped), each tunnel family left out of
# the same table and scored with the new model's thresholds (tunnel 0.56 offline, 0.82 live, 0.50
# live opening) against 2026.11.24.12's (0.83, 0.92, 0.88), whole / live: Dropbear 0.89 / 0.86 ->
# 0.91 / 0.87, TLS shell 0.98 / 0.92 -> 1.0 / 0.98, plain shell 0.77 / 0.43 -> 0.93 / 0.70,
# WebSocket 1.0 / 0.70 -> 1.0 / 0.86, SSH in TLS live 0.98 -> 1.0, the rest 1.0 both; on the 14
# held runs, with the hold, as 2026.11.24.12 but one slow task more (33 of 532 benign sessions).
# Shipped as 2026.11.25.3 (the same boosters and thresholds, with an eager set 0.84 / 0.92 / 0.84
# and the evaluation as given): training/train.py --table training/data/table-2026-11-25.npz.
# 2026.11.25.4 adds q1-q3 (above): training/train.py --table training/data/table-2026-11-25q.npz.
# 2026.11.25.5: the same command and table, thresholds the median of three out-of-fold draws
# (train.THRESHOLD_DRAWS); its boosters are 2026.11.25.4's byte for byte. 2026.11.25.6: the same,
# offline thresholds also within the session budget on whole captures (train.OFFLINE_SESSION_VIEW).
# 2026.12.07.1: the 49 runs above made again (2026-12-07, the same seeds; about 3 hours, the
# table about 6 minutes) and the copies drawn in whole values as nfstream reports them
# (training/augment.py): training/train.py --table training/data/table-2026-12-07.npz
# --version 2026.12.07.1 (about 25 minutes; its evaluation about 30 more). held/h1-h3 and t1-t4
# made again too (about 25 minutes), scored with training.pipeline and training.heldout against
# 2026.11.25.6 (the card's known limits).
# run held/c3 automation 40 5 0 1500 - 251 --asyncssh-share 0.5 --ssh-mux-share 0.5 --slow-task-share 0.5 &
# run held/c4 automation 15 3 0.2 1500 - 252 --asyncssh-share 0.5 --ssh-mux-share 0.5 --slow-task-share 0.5 & wait
