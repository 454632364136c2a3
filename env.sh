# Source this file (`source ./env.sh`) to use the rloss build from your shell:
# the `caffe` and `rloss` commands on PATH, pycaffe and the rloss package on PYTHONPATH, and
# libcaffe on LD_LIBRARY_PATH. Run `make` first.
# bash and zsh tell where this file is; plain sh (make's) does not (its $0 is
# the shell), so there it must be sourced from the repository root, as the
# Makefile does.
if [ -n "${BASH_SOURCE:-}" ]; then
  _rloss_root=$(dirname "$BASH_SOURCE")
elif [ -n "${ZSH_VERSION:-}" ]; then
  _rloss_root=$(dirname "$0")
else
  _rloss_root=.
fi
_rloss_root=$(cd "$_rloss_root" && pwd)
if [ ! -d "$_rloss_root/.caffe/build" ]; then
  echo "env.sh: no Caffe build found; run 'make' in $_rloss_root first" >&2
else
  _rloss_caffe=$(cd "$_rloss_root/.caffe" && pwd -P)
  case ":$PATH:" in *":$_rloss_caffe/build/tools:"*) ;; *)
    export PATH="$_rloss_caffe/build/tools${PATH:+:$PATH}" ;; esac
  case ":${PYTHONPATH:-}:" in *":$_rloss_caffe/python:"*) ;; *)
    export PYTHONPATH="$_rloss_caffe/python:$_rloss_root/python${PYTHONPATH:+:$PYTHONPATH}" ;; esac
  case ":${LD_LIBRARY_PATH:-}:" in *":$_rloss_caffe/build/lib:"*) ;; *)
    export LD_LIBRARY_PATH="$_rloss_caffe/build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
  case ":$PATH:" in *":$_rloss_root/bin:"*) ;; *)
    export PATH="$_rloss_root/bin:$PATH" ;; esac
  export RLOSS_CAFFE="$_rloss_caffe"
  unset _rloss_caffe
fi
unset _rloss_root
