# etcdproxy-operator image. The base tag must equal the ansible-operator version
# pinned in hack/tools/ansible-operator/go.mod (tests/unit/test_packaging.py checks).
FROM quay.io/operator-framework/ansible-operator:v1.42.2

# Same Python pins as the venv the tests run in. Of the collections the ansible package bundles, only those
# requirements.yml names stay (~490 MiB less), in the same layer as pip so that the image is smaller.
COPY requirements-runtime.txt ${HOME}/requirements-runtime.txt
COPY requirements.yml ${HOME}/requirements.yml
COPY hack/bundled_collections.py /tmp/bundled_collections.py
RUN python3 -m pip install --no-cache-dir -r ${HOME}/requirements-runtime.txt \
 && python3 /tmp/bundled_collections.py ${HOME}/requirements.yml && rm /tmp/bundled_collections.py

# Our ansible-runner event plugin (the base image's may differ; ours is tested here).
COPY runner-http/ /tmp/runner-http/
RUN python3 -m pip install --no-cache-dir /tmp/runner-http/ && rm -rf /tmp/runner-http/

# Collections from local sources only: kubernetes.core is in the pinned ansible package;
# etcdproxy.operator and operator_sdk.util are ours, found first (ANSIBLE_COLLECTIONS_PATH below;
# the base image's own operator_sdk.util under ~/.ansible/collections is not on that path).
COPY collections/ ${HOME}/collections/

COPY ansible.cfg ${HOME}/ansible.cfg
COPY watches.yaml ${HOME}/watches.yaml
COPY roles/ ${HOME}/roles/
COPY playbooks/ ${HOME}/playbooks/

ENV ANSIBLE_CONFIG=${HOME}/ansible.cfg \
    ANSIBLE_GATHERING=explicit \
    ANSIBLE_COLLECTIONS_PATH=${HOME}/collections:/usr/share/ansible/collections
