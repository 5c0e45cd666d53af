"""The application on top of the library: training runs (`training`), the ``rcn`` command (`cli`) and
named experiments (`experiments`). The library (`rcn_keras` outside this package) never imports it."""
