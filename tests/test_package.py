"Package-level checks: the exported package imports and carries the version of settings.ini."
from configparser import ConfigParser
from pathlib import Path

import srflow_nb


def test_version_matches_settings():
    cfg = ConfigParser(delimiters=['='])
    cfg.read(Path(__file__).parents[1] / 'settings.ini')
    assert srflow_nb.__version__ == cfg['DEFAULT']['version']


def test_console_script_target_exists():
    cfg = ConfigParser(delimiters=['='])
    cfg.read(Path(__file__).parents[1] / 'settings.ini')
    name, target = cfg['DEFAULT']['console_scripts'].split('=')
    mod, fn = target.split(':')
    import importlib
    assert name == 'srflow' and callable(getattr(importlib.import_module(mod), fn))


LEGACY_ARGPARSE: set[str] = set()   # every command line is generated from a signature registered in srflow_nb.cli.COMMANDS


def test_no_hand_written_argparse():
    "Command lines are generated from signatures (srflow_nb.cli); no module builds its own parser."
    pkg = Path(srflow_nb.__file__).parent
    found = {p.name for p in pkg.glob('*.py') if 'ArgumentParser(' in p.read_text()}
    assert found <= LEGACY_ARGPARSE, found - LEGACY_ARGPARSE
