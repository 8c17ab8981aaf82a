#!/bin/sh
# System packages the Space tests need: Debian chromium for the headless-browser test.
# Idempotent: does nothing when the browser is already installed. Needs root (or sudo) to install.
set -e
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
