"Package-level checks: the exported package imports and carries the version of settings.ini."
from configparser import ConfigParser
from pathlib import Path

import srflow_nb


def test_version_matches_settings():
    cfg = ConfigParser(delimiters=['='])
    cfg.read(Path(__file__).parents[1] / 'settings.ini')
    assert srflow_nb.__version__ == cfg['DEFAULT']['version']
