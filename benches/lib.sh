# Shared by the bench scripts (sourced, not run).
# A free TCP port on 127.0.0.1, as the kernel hands one out.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits up to 10 s for something to listen on 127.0.0.1:$1.
wait_port() { for _ in $(seq 1 200); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
# The load generator is thousands of clients on one loopback address, which the pods'
# per-address abuse limits (docs/security.md) would refuse: lifted for the bench pods only.
export PARLOR_GUARD__REST_PER_MIN=1000000000 PARLOR_GUARD__AUTH_PER_MIN=1000000000 \
  PARLOR_GUARD__WS_PER_ADDR=1000000000 PARLOR_GUARD__WS_HANDSHAKES_PER_MIN=1000000000 \
  PARLOR_GUARD__HASH_QUEUE=1000000 PARLOR_LIMITS__ROOMS_PER_USER=1000000
