"""Environment pack (môi trường): air, water, weather and hydrological stations, VN_AQI, QCVN limits, VN_WQI."""
