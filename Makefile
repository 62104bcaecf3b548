# Two commands matter: `make demo` and `make test`. Each sets up what it needs.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup demo test bench proto clean

setup: $(STAMP)

$(STAMP): pyproject.toml extensions/chaostoolkit-shopnow/pyproject.toml $(wildcard extensions/chaostoolkit-shopnow/chaosshopnow/*.py)
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (apt-get)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v haproxy >/dev/null 2>&1 || { \
	  echo "installing haproxy (apt-get; the peer row of make bench)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing prometheus and promtool (apt-get)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium, headless, for the dashboard tests (apt-get)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }
	@command -v etcd >/dev/null 2>&1 || { \
	  echo "installing etcd-server (apt-get)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null; }
	@command -v nft >/dev/null 2>&1 || { \
	  echo "installing nftables (apt-get; the network faults of the netns stack)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null; }
	@command -v ip >/dev/null 2>&1 || { \
	  echo "installing iproute2 (apt-get; regionctl up --netns)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; }
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev]'
	$(PY) -m pip install -q ./extensions/chaostoolkit-shopnow
	@touch $(STAMP)

demo: setup
	$(PY) -m regionctl.main demo

test: setup
	.venv/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider --durations=25

bench: setup
	$(PY) -m regionctl.main bench serving

proto: setup
	$(PY) -m contracts.protogen

clean:
	rm -rf .venv build *.egg-info .regionctl
